//! The gate: callers are authenticated from their headers before a request's body is read.
//!
//! A call without valid credentials is answered UNAUTHENTICATED here, outside the concurrency
//! limit and without decoding its message (which may be 64 MiB), so unauthenticated clients
//! cannot take the capacity of authenticated ones. The refusal is audited like any other
//! call. The proven principal travels to the service in the request's extensions
//! ([`Authenticated`]); the guard then only decides grants.

use crate::access::Principal;
use crate::service::guard::Guard;
use crate::service::status;
use batchstore_proto::wire::{ACTOR_KEY, AUTHORIZATION_KEY};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::http;

/// The metastore service's path prefix; other services (health, reflection) pass the gate.
pub(super) const SERVICE_PREFIX: &str = "/batchstore.v1.Metastore/";

/// The principal the gate proved.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Arc<Principal>);

/// Puts the gate in front of a service.
#[derive(Debug, Clone)]
pub struct GateLayer {
    guard: Arc<Guard>,
}

impl GateLayer {
    pub fn new(guard: Arc<Guard>) -> Self {
        GateLayer { guard }
    }
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// The gate around `S`.
#[derive(Debug, Clone)]
pub struct Gate<S> {
    inner: S,
    guard: Arc<Guard>,
}

type Answer<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Gate<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Answer<Self::Response, S::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        // Readiness of the inner service (the concurrency limit) is awaited per call, only
        // for calls that pass.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = request.uri().path().strip_prefix(SERVICE_PREFIX);
        if let Some(method) = method
            && self.guard.authenticates()
        {
            let headers = request.headers();
            match self.guard.authenticate(
                headers
                    .get(AUTHORIZATION_KEY)
                    .map(http::HeaderValue::to_str),
            ) {
                Ok(principal) => {
                    request.extensions_mut().insert(Authenticated(principal));
                }
                Err(error) => {
                    let actor = headers
                        .get(ACTOR_KEY)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("anonymous");
                    self.guard.audit_refused(method, actor, &error);
                    let refusal = status::to_status(error);
                    crate::metrics::rpc(method, refusal.code(), std::time::Duration::ZERO);
                    let refusal = refusal.into_http();
                    return Box::pin(async move { Ok(refusal) });
                }
            }
        }
        Box::pin(async move {
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            inner.call(request).await
        })
    }
}
