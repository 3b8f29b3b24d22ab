//! Routes: path and method to handler. A handler fills the [`Reply`]; errors are
//! rendered in one place ([`Error::render`]), and a failure on the server's side is
//! logged here, once, with the request id the response carries.

use codec::error_code::ErrorCode;
use tracing::{info, warn};

use crate::{
    api::{admin, confirm, public, request::limit_address},
    core::Core,
    error::Error,
    http::{Head, Method, Reply},
    metrics,
};

const GET: &str = "GET, HEAD";
const POST: &str = "POST";

pub async fn dispatch(core: &Core, head: &Head<'_>, body: &[u8], reply: &mut Reply) {
    let cors = &core.config.cors;
    if cors.enabled() && cors.preflight(head, reply) {
        return;
    }
    let started = metrics::now_micros();
    let result = route(core, head, body, reply).await;
    let code = result.as_ref().err().map(Error::code);
    if let Err(e) = result {
        e.render(reply);
        if let Some(cause) = e.cause() {
            let request_id = reply.request_id(head.request_id);
            warn!(
                request_id = %String::from_utf8_lossy(request_id),
                trace_id = %String::from_utf8_lossy(head.trace_id.unwrap_or_default()),
                core = core.id,
                path = head.path,
                code = e.code().as_str(),
                error = %e,
                cause,
                "request failed"
            );
        }
    }
    if cors.enabled() {
        cors.annotate(head, reply);
    }
    let micros = metrics::now_micros().saturating_sub(started);
    let route = metrics::route_of(head.path);
    core.metrics.request(route, reply.status(), micros, code);
    let every = core.config.access_log_every;
    if every > 0 && core.metrics.sampled(every) {
        let status = reply.status();
        let request_id = reply.request_id(head.request_id);
        info!(
            request_id = %String::from_utf8_lossy(request_id),
            trace_id = %String::from_utf8_lossy(head.trace_id.unwrap_or_default()),
            core = core.id,
            route = metrics::ROUTES[route],
            path = head.path,
            status,
            micros,
            "request"
        );
    }
}

async fn route(core: &Core, head: &Head<'_>, body: &[u8], reply: &mut Reply) -> Result<(), Error> {
    let mut segments = head.path.strip_prefix('/').unwrap_or(head.path).split('/');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some("public"), Some("ping"), None, ..) => {
            allow(head, GET)?;
            ping(reply);
            Ok(())
        }
        (Some("public"), Some("health"), None, ..) => {
            allow(head, GET)?;
            health(core, reply)
        }
        (Some("public"), Some("enter"), None, ..) => {
            allow(head, POST)?;
            limit_address(core, head)?;
            public::room::enter(core, head, body, reply).await
        }
        (Some("public"), Some("challenge"), None, ..) => {
            allow(head, GET)?;
            public::room::challenge(core, head, reply).await
        }
        (Some("public"), Some("room-status"), None, ..) => {
            allow(head, GET)?;
            public::room::room_status(core, head, reply).await
        }
        (Some("public"), Some("fairness"), Some(event), None, ..) => {
            allow(head, GET)?;
            public::fairness::fairness(core, event, reply).await
        }
        (Some("public"), Some("room-events"), None, ..) => {
            allow(head, GET)?;
            public::room::room_events(core, head, reply).await
        }
        (Some("public"), Some("hold"), None, ..) => {
            allow(head, POST)?;
            limit_address(core, head)?;
            public::holds::hold(core, head, body, reply).await
        }
        (Some("public"), Some("release"), None, ..) => {
            allow(head, POST)?;
            public::holds::release(core, head, body, reply).await
        }
        (Some("public"), Some("summary"), Some(event), Some(section), None) => {
            allow(head, GET)?;
            public::reads::summary(core, head, event, section, reply).await
        }
        (Some("public"), Some("seats"), Some(event), None, ..) => {
            allow(head, GET)?;
            public::reads::seats(core, head, event, reply).await
        }
        (Some("confirm"), Some("payment-intent"), None, ..) => {
            allow(head, POST)?;
            limit_address(core, head)?;
            confirm::intent::payment_intent(core, head, body, reply).await
        }
        (Some("confirm"), Some("commit"), None, ..) => {
            allow(head, POST)?;
            limit_address(core, head)?;
            confirm::commit::commit(core, head, body, reply).await
        }
        (Some("confirm"), Some("payment-callback"), None, ..) => {
            allow(head, POST)?;
            confirm::callback::payment_callback(core, head, body, reply).await
        }
        (Some("confirm"), Some("status"), None, ..) => {
            allow(head, GET)?;
            confirm::status::status(core, head, reply).await
        }
        (Some("admin"), Some("events"), Some(event), Some("admission"), None) => {
            allow(head, POST)?;
            admin::set_admission(core, head, event, body, reply).await
        }
        (Some("admin"), Some("events"), Some(event), Some("revoke"), None) => {
            allow(head, POST)?;
            admin::revoke(core, head, event, body, reply).await
        }
        _ => Err(Error::request(ErrorCode::NotFound, "no such route")),
    }
}

fn allow(head: &Head<'_>, allowed: &'static str) -> Result<(), Error> {
    let ok = match head.method {
        Method::Get | Method::Head => allowed == GET,
        Method::Post => allowed == POST,
        Method::Options | Method::Other => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::MethodNotAllowed { allow: allowed })
    }
}

/// Liveness: answers while the process runs, with no I/O.
fn ping(reply: &mut Reply) {
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    reply.json_body().extend_from_slice(br#"{"status":"ok"}"#);
}

/// Readiness: 503 once draining, so load balancers stop sending new requests, and
/// until this core's first Redis connection. Redis lost after that is degraded mode:
/// 200 `degraded`, for the cached reads are still served (and writes answer 503 at
/// once); a 503 would make the load balancer and ECS's health check replace every
/// edge, which share the one Redis, and lose every cached copy with them.
fn health(core: &Core, reply: &mut Reply) -> Result<(), Error> {
    if core.shared.draining() {
        return Err(Error::RetryLater {
            code: ErrorCode::Draining,
            message: "shutting down",
            retry_after_secs: 5,
        });
    }
    let body: &[u8] = if core.redis.is_connected() {
        br#"{"status":"ready"}"#
    } else if core.redis.is_lost() {
        br#"{"status":"degraded","redis":"unreachable"}"#
    } else {
        return Err(Error::RetryLater {
            code: ErrorCode::NotReady,
            message: "no Redis connection",
            retry_after_secs: 1,
        });
    };
    reply.reset(200);
    reply.header("cache-control", b"no-store");
    reply.json_body().extend_from_slice(body);
    Ok(())
}
