//! Routes and handlers. A handler fills the [`Reply`]; errors are rendered in one place
//! ([`Error::render`]).

use codec::error_code::ErrorCode;

use crate::{
    error::Error,
    http::{Head, Method, Reply},
    server::Core,
};

const GET: &str = "GET, HEAD";

pub(crate) async fn dispatch(core: &Core, head: &Head<'_>, _body: &[u8], reply: &mut Reply) {
    let result = match head.path {
        "/public/ping" => allow_get(head).map(|()| ping(reply)),
        "/public/health" => allow_get(head).and_then(|()| health(core, reply)),
        _ => Err(Error::request(ErrorCode::NotFound, "no such route")),
    };
    if let Err(e) = result {
        e.render(reply);
    }
}

fn allow_get(head: &Head<'_>) -> Result<(), Error> {
    match head.method {
        Method::Get | Method::Head => Ok(()),
        Method::Post | Method::Other => Err(Error::MethodNotAllowed { allow: GET }),
    }
}

/// Liveness: answers while the process runs, with no I/O.
fn ping(reply: &mut Reply) {
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    reply.json_body().extend_from_slice(br#"{"status":"ok"}"#);
}

/// Readiness: 503 once draining, so load balancers stop sending new requests, and
/// while this core has no Redis connection.
fn health(core: &Core, reply: &mut Reply) -> Result<(), Error> {
    if core.shared.draining() {
        return Err(Error::Unavailable {
            code: ErrorCode::Draining,
            message: "shutting down",
            retry_after_secs: 5,
        });
    }
    if !core.redis.is_connected() {
        return Err(Error::Unavailable {
            code: ErrorCode::NotReady,
            message: "no Redis connection",
            retry_after_secs: 1,
        });
    }
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    reply
        .json_body()
        .extend_from_slice(br#"{"status":"ready"}"#);
    Ok(())
}
