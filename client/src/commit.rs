//! Sending a commit and settling its outcome; repeating calls whose answer was lost.
//!
//! A commit whose reply is lost (connection cut, deadline, metastore restarting) may or may not
//! have happened. The client never guesses: it sends the *same* commit again, with backoff and
//! a bound. The metastore answers an identical retry of a commit it already made with the
//! original versions (`already_committed`), and refuses anything else, so a retry can neither
//! duplicate nor lose a write. Only a definite answer ends the loop: the metastore's own (a
//! status it tagged with its error kind) or a proxy's refusal to pass the call on; a status
//! made while reading a reply cut short or garbled is no answer. A refusal that follows a lost
//! reply is not taken on trust either (a grant revoked or a table dropped meanwhile refuses
//! the resend even though the first send committed): the client aborts one of the batches,
//! and only once that succeeds, which proves the commit never happened and never will,
//! reports the refusal. When nothing settles it within the
//! bound, the error says the outcome is unknown and how to settle it, and the batches are not
//! aborted (their commit may have succeeded).

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::types::CommitInfo;
use crate::wire::commit_info;
use batchstore_proto::v1 as pb;
use std::time::{Duration, Instant};
use tonic::Code;

/// Most attempts to send one commit.
const MAX_ATTEMPTS: u32 = 8;
/// Longest time spent settling one commit's outcome.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// Deadline of each Commit call (the metastore checks every file, which takes a while for
/// many files on S3).
const COMMIT_DEADLINE: Duration = Duration::from_secs(600);

/// How a commit ended.
#[derive(Debug)]
pub enum CommitOutcome {
    /// The metastore answered.
    Answered(Result<Vec<CommitInfo>>),
    /// No answer settled it: the batches may or may not be committed.
    Unknown(ClientError),
}

impl Client {
    /// Sends `request` until the metastore gives a definite answer, within a bound.
    pub(crate) async fn commit_settled(&self, request: pb::CommitRequest) -> CommitOutcome {
        let sent = repeat_while_unknown(|| {
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(COMMIT_DEADLINE);
            let mut rpc = self.rpc.clone();
            async move { rpc.commit(call).await }
        })
        .await;
        let batches: Vec<&str> = request
            .updates
            .iter()
            .map(|u| u.batch_id.as_str())
            .collect();
        match sent {
            Ok(reply) => {
                let reply = reply.into_inner();
                let already = reply.already_committed;
                CommitOutcome::Answered(Ok(reply
                    .committed
                    .into_iter()
                    .map(|c| commit_info(c, already))
                    .collect()))
            }
            Err((status, attempts)) if unsettled(&status) => {
                CommitOutcome::Unknown(ClientError::OutcomeUnknown(format!(
                    "the commit's outcome is unknown: the metastore did not answer after \
                     {attempts} attempts ({}: {}). {}",
                    code_name(status.code()),
                    status.message(),
                    how_to_settle(&batches)
                )))
            }
            // The first send was refused: nothing was committed.
            Err((status, 1)) => CommitOutcome::Answered(Err(status.into())),
            // A resend was refused after an earlier send went unanswered, which may have
            // committed: true only once a batch of the commit can no longer be committed.
            Err((status, attempts)) => {
                let refusal = ClientError::from(status);
                match self.abort_one(&batches).await {
                    Ok(()) => CommitOutcome::Answered(Err(refusal)),
                    Err(abort) => CommitOutcome::Unknown(ClientError::OutcomeUnknown(format!(
                        "the commit's outcome is unknown: an attempt went unanswered, then \
                         attempt {attempts} was refused ({refusal}), which does not say whether \
                         the earlier one committed, and batch {} could not be aborted to settle \
                         it ({abort}). {}",
                        batches.first().copied().unwrap_or_default(),
                        how_to_settle(&batches)
                    ))),
                }
            }
        }
    }

    /// Aborts the first of `batches`: once that succeeds, the commit of all of them never
    /// happened and never will (one commit publishes all its batches or none, and an aborted
    /// batch cannot be committed). A batch the catalog does not hold at all (one lost in a
    /// database crash before its commit) is proof as well; a committed batch refuses to be
    /// aborted, and one whose table was dropped is no proof either way.
    async fn abort_one(&self, batches: &[&str]) -> Result<()> {
        let Some(batch_id) = batches.first() else {
            return Ok(());
        };
        repeat_while_unknown(|| {
            let mut rpc = self.rpc.clone();
            async move { rpc.abort_write(abort_call(batch_id)).await }
        })
        .await
        .map_or_else(
            |(status, _)| match ClientError::from(status) {
                ClientError::NotFound {
                    what: Some(crate::error::Missing::Batch),
                    ..
                } => Ok(()),
                other => Err(other),
            },
            |_| Ok(()),
        )
    }
}

/// The AbortWrite call of one batch, with its deadline.
pub(crate) fn abort_call(batch_id: &str) -> tonic::Request<pb::AbortWriteRequest> {
    let mut call = tonic::Request::new(pb::AbortWriteRequest {
        batch_id: batch_id.to_owned(),
    });
    call.set_timeout(crate::client::RPC_DEADLINE);
    call
}

/// What a user does about a commit whose outcome is unknown.
fn how_to_settle(batches: &[&str]) -> String {
    format!(
        "Batch(es) {} may or may not be committed; nothing was aborted. Check with `tablectl \
         batch {}` once the metastore is reachable, and do not write the data again before you \
         know",
        batches.join(", "),
        batches.first().copied().unwrap_or_default()
    )
}

/// Sends a call again while its failure leaves the outcome unknown ([`unsettled`]), with
/// backoff, at most [`MAX_ATTEMPTS`] times and for [`SETTLE_LIMIT`]. Only for calls that are
/// safe to repeat: idempotent ones (a commit, a read), or ones whose repeats are harmless (a BeginWrite, whose
/// unused batch is given up when its lease runs out). Returns the last status and the number
/// of attempts on failure.
pub(crate) async fn repeat_while_unknown<T, F, Fut>(
    mut call: F,
) -> std::result::Result<T, (tonic::Status, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(answer) => return Ok(answer),
            Err(status)
                if unsettled(&status)
                    && attempt < MAX_ATTEMPTS
                    && started.elapsed() + delay <= SETTLE_LIMIT =>
            {
                tracing::debug!(attempt, code = ?status.code(), "no answer; sending again");
            }
            Err(status) => return Err((status, attempt)),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        attempt += 1;
    }
}

/// True when a failed call is not settled: it may be sent again (see
/// [`ClientError::retryable`]), or the status is one that reading a reply makes, not the
/// metastore's answer (untagged INTERNAL, UNKNOWN, OUT_OF_RANGE or DATA_LOSS: a reply cut short
/// or garbled), so the call may well have been carried out. A proxy's own refusals (401, 403,
/// 404) are definite: it did not pass the call on.
fn unsettled(status: &tonic::Status) -> bool {
    ClientError::from(status.clone()).retryable()
        || (!ClientError::answered_by_metastore(status)
            && matches!(
                status.code(),
                Code::Internal | Code::Unknown | Code::OutOfRange | Code::DataLoss
            ))
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Unavailable => "unavailable",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::Cancelled => "cancelled",
        Code::ResourceExhausted => "busy",
        _ => "transport error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::tests::from_metastore as tagged;

    /// What reading a broken reply makes is no answer; the metastore's answers and a proxy's
    /// refusal to pass a call on are.
    #[test]
    fn only_definite_answers_settle_a_call() {
        for no_answer in [
            tonic::Status::out_of_range("Error, decoded message length too large"),
            tonic::Status::internal("Unexpected EOF decoding stream."),
            tonic::Status::unknown("protocol error: missing grpc-status trailer"),
            tonic::Status::data_loss("garbled"),
            tonic::Status::unavailable("connection refused"),
            tagged(Code::Unavailable, "unavailable"),
        ] {
            assert!(unsettled(&no_answer), "{no_answer:?}");
        }
        for answer in [
            tagged(Code::FailedPrecondition, "failed_precondition"),
            tagged(Code::Internal, "internal"),
            tagged(Code::NotFound, "not_found"),
            tonic::Status::unimplemented("grpc-status header missing, mapped from HTTP 404"),
            tonic::Status::permission_denied("grpc-status header missing, mapped from HTTP 403"),
        ] {
            assert!(!unsettled(&answer), "{answer:?}");
        }
    }
}
