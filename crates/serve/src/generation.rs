//! Running a backend's blocking `generate` off the async runtime and passing its pieces back
//! through a channel, and its blocking `classify` likewise. A panicking backend becomes an
//! error, never a crashed server.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{Backend, GenerateRequest, Generation};

/// Pieces buffered between the backend and a slow client before the backend waits.
const PIECES_IN_FLIGHT: usize = 64;

/// What a running generation reports, for its choice (its index among the requests).
#[derive(Debug)]
pub(crate) enum Piece {
    Text(usize, String),
    /// A choice is complete, or failed (then no other choice follows).
    Done(usize, Result<Generation, String>),
}

/// Starts the generations of `requests` (one per choice) one after another on a blocking
/// thread. `hold` (the queue ticket, the slot permit, the in-flight gauge) is released when the
/// backend returns the last one, not when the client leaves, so the bound counts work that is
/// really running. Dropping the receiver asks the backend to stop.
pub(crate) fn start(
    backend: Arc<dyn Backend>,
    requests: Vec<GenerateRequest>,
    hold: impl Send + 'static,
) -> mpsc::Receiver<Piece> {
    let (tx, rx) = mpsc::channel(PIECES_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut hold = Some(hold);
        let count = requests.len();
        for (index, req) in requests.into_iter().enumerate() {
            let mut on_text = |text: &str| {
                text.is_empty()
                    || tx
                        .blocking_send(Piece::Text(index, text.to_owned()))
                        .is_ok()
            };
            let result = catch_unwind(AssertUnwindSafe(|| backend.generate(&req, &mut on_text)))
                .unwrap_or_else(|panic| {
                    Err(format!("backend panicked: {}", panic_message(&*panic)))
                });
            let last = index + 1 == count || result.is_err() || tx.is_closed();
            if last {
                // Free the slot before reporting, so that a client who has its answer finds
                // the slot free.
                drop(hold.take());
            }
            // The receiver may be gone (the client left); nothing to tell then.
            if tx.blocking_send(Piece::Done(index, result)).is_err() || last {
                return;
            }
        }
    });
    rx
}

/// Runs `backend.classify(texts)` on a blocking thread; `hold` is released when it returns.
pub(crate) async fn classify(
    backend: Arc<dyn Backend>,
    texts: Vec<String>,
    hold: impl Send + 'static,
) -> Result<Vec<Vec<f32>>, String> {
    tokio::task::spawn_blocking(move || {
        let result = catch_unwind(AssertUnwindSafe(|| backend.classify(&texts)))
            .unwrap_or_else(|panic| Err(format!("backend panicked: {}", panic_message(&*panic))));
        drop(hold);
        result
    })
    .await
    .unwrap_or_else(|e| Err(format!("the backend stopped without a result: {e}")))
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "no message"
    }
}

/// Waits for the end of all `count` generations, dropping the pieces (each result holds its
/// whole text); the first error ends the wait.
pub(crate) async fn finish(
    rx: &mut mpsc::Receiver<Piece>,
    count: usize,
) -> Result<Vec<Generation>, String> {
    let mut generations = Vec::with_capacity(count);
    while let Some(piece) = rx.recv().await {
        if let Piece::Done(_, result) = piece {
            generations.push(result?);
            if generations.len() == count {
                return Ok(generations);
            }
        }
    }
    Err("the backend stopped without a result".to_owned())
}
