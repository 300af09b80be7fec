//! Requests the metastore cannot decode are the caller's fault: INVALID_ARGUMENT, not INTERNAL.
//!
//! tonic answers a request body it cannot decode (not Protobuf, a message cut short, a wrong
//! compression flag) with INTERNAL, and one larger than the limit with OUT_OF_RANGE, before
//! any handler runs. Every error the metastore itself
//! answers carries `batchstore-error-kind` (see `status`), so an untagged INTERNAL here is
//! such a decoding failure. This layer answers it as INVALID_ARGUMENT, tagged: a hostile or
//! broken client is told what it did, and the metastore's own INTERNAL keeps meaning a fault
//! of the metastore (which clients must not take for a refusal of a request they sent well).

use batchstore_proto::wire::ERROR_KIND_KEY;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::codegen::http::{self, HeaderValue};

/// gRPC's status header, and the codes concerned.
const GRPC_STATUS: &str = "grpc-status";
const INTERNAL: &str = "13";
const INVALID_ARGUMENT: &str = "3";
const OUT_OF_RANGE: &str = "11";

/// Puts the relabelling in front of a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct MalformedLayer;

impl<S> tower::Layer<S> for MalformedLayer {
    type Service = Malformed<S>;

    fn layer(&self, inner: S) -> Malformed<S> {
        Malformed { inner }
    }
}

/// [`MalformedLayer`] around `S`.
#[derive(Debug, Clone)]
pub struct Malformed<S> {
    inner: S,
}

type Answer<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Malformed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Answer<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let ours = request
            .uri()
            .path()
            .starts_with(super::gate::SERVICE_PREFIX);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            if ours {
                relabel(response.headers_mut());
            }
            Ok(response)
        })
    }
}

/// Turns an untagged INTERNAL answered before any handler ran (its status in the headers)
/// into a tagged INVALID_ARGUMENT, and tags an untagged OUT_OF_RANGE (a request larger than
/// the metastore decodes) as the invalid argument it is.
fn relabel(headers: &mut http::HeaderMap) {
    if headers.contains_key(ERROR_KIND_KEY) {
        return;
    }
    match headers.get(GRPC_STATUS).and_then(|code| code.to_str().ok()) {
        Some(INTERNAL) => {
            headers.insert(GRPC_STATUS, HeaderValue::from_static(INVALID_ARGUMENT));
        }
        Some(OUT_OF_RANGE) => {}
        _ => return,
    }
    headers.insert(ERROR_KIND_KEY, HeaderValue::from_static("invalid_argument"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_untagged_internal_is_relabelled() {
        let mut untagged = http::HeaderMap::new();
        untagged.insert(GRPC_STATUS, HeaderValue::from_static(INTERNAL));
        relabel(&mut untagged);
        assert_eq!(untagged[GRPC_STATUS], INVALID_ARGUMENT);
        assert_eq!(untagged[ERROR_KIND_KEY], "invalid_argument");

        let mut ours = http::HeaderMap::new();
        ours.insert(GRPC_STATUS, HeaderValue::from_static(INTERNAL));
        ours.insert(ERROR_KIND_KEY, HeaderValue::from_static("internal"));
        relabel(&mut ours);
        assert_eq!(ours[GRPC_STATUS], INTERNAL);

        let mut too_large = http::HeaderMap::new();
        too_large.insert(GRPC_STATUS, HeaderValue::from_static(OUT_OF_RANGE));
        relabel(&mut too_large);
        assert_eq!(too_large[GRPC_STATUS], OUT_OF_RANGE);
        assert_eq!(too_large[ERROR_KIND_KEY], "invalid_argument");

        let mut other = http::HeaderMap::new();
        other.insert(GRPC_STATUS, HeaderValue::from_static("14"));
        relabel(&mut other);
        assert_eq!(other[GRPC_STATUS], "14");
        assert!(!other.contains_key(ERROR_KIND_KEY));
    }
}
