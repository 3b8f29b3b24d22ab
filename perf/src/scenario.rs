//! What each slot does: the scenarios' requests and what they learn from the answers.
//!
//! - `ping`, `summary`, `hold`: one request a slot (hold: a random seat, the next
//!   pre-entered buyer's token).
//! - `mixed`: the seed's mix by slot number, out of every 10: 7 public reads (summary,
//!   one in four a room-status), 2 buying steps (the connection's current buyer: hold,
//!   then payment-intent, then commit) and 1 status poll of an accepted commit.
//! - `buy`: buying steps only, so a third of the slots are commits: the rate of
//!   intent+commit pairs the edge and its queue take.
//! - `room-status`: the next pre-entered buyer's place in line, one request a slot.
//! - `status`: a connection buys until it has an accepted commit, then polls the status
//!   of its accepted orders in turn, final or not: what one status poll costs.
//! - `journey`: a slot is a buyer arriving; the connection takes the buyer from enter to
//!   the order's final status, polling as a browser would.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Deserialize;

use crate::{
    client::{write_request, Conn, Failure},
    schedule::{Clock, Slot},
    stats::{Endpoint, Interval, StageStats, Trace, DROPPED, HOLD_LIMIT, NO_RETRY_AFTER, TRACE_MS},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ping,
    Summary,
    Enter,
    Hold,
    RoomStatus,
    Status,
    Mixed,
    Buy,
    Journey,
}

impl Kind {
    /// Scenarios that buy, and so end with the audit.
    pub fn buys(self) -> bool {
        matches!(self, Kind::Mixed | Kind::Buy | Kind::Status | Kind::Journey)
    }

    /// Scenarios that need buyers entered beforehand.
    pub fn needs_users(self) -> bool {
        matches!(
            self,
            Kind::Hold | Kind::RoomStatus | Kind::Status | Kind::Mixed | Kind::Buy
        )
    }
}

/// What every thread needs to know about the scenario.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: Kind,
    pub event: String,
    pub sections: Vec<String>,
    pub seats_per_section: u32,
    /// Unique per run: user ids and idempotency keys start with it.
    pub run_id: String,
    pub ping_path: String,
    /// `--header` lines (`Name: value\r\n` each) added to ping and summary requests:
    /// `Accept-Encoding`, `Origin`.
    pub read_headers: String,
    /// Between room-status polls and status polls of a journey.
    pub poll: Duration,
    /// A journey not final after this counts as a timeout.
    pub journey_timeout: Duration,
    /// `enter --addresses N`: each request comes from one of N client addresses
    /// (`X-Forwarded-For: 10.x.y.z`, for an edge with `TRUSTED_PROXY_HOPS=1`).
    pub addresses: Option<u32>,
    /// `enter --abusers N --abuse-pct P`: P of every 100 requests come from one of N
    /// abusive addresses (`192.0.2.k`), each with a made-up buyer; counted apart.
    pub abusers: u32,
    pub abuse_pct: u32,
}

/// A buyer in the waiting room.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// A commit answered 202, and what its status said last.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub user: String,
    pub token: String,
    pub idem: String,
    /// Wall-clock milliseconds when the commit was sent.
    pub sent_ms: u64,
    /// `CONFIRMED` or `REJECTED` once seen.
    pub outcome: Option<&'static str>,
}

/// One thread's shared state (its runtime is single-threaded: `Rc`, `Cell`, `RefCell`).
pub struct ThreadCtx {
    pub plan: Arc<Plan>,
    pub addr: SocketAddr,
    pub clock: Clock,
    pub windows: Vec<(Instant, Instant)>,
    pub timeout: Duration,
    /// A slot still unsent this long after its due time is dropped (counted, status 5).
    pub drop_after: Duration,
    pub users: Arc<Vec<User>>,
    pub next_user: Cell<usize>,
    pub stages: RefCell<Vec<StageStats>>,
    pub interval: RefCell<Interval>,
    pub accepted: RefCell<Vec<Accepted>>,
    pub connects: Cell<u64>,
    /// Thread number, for unique names.
    pub thread: usize,
    /// Differs from run to run (wall-clock nanoseconds at its start): the runs of one
    /// invocation (a max search, stepup) draw other seats and use other idempotency
    /// keys than the runs before them, whose seats are sold and keys taken.
    pub nonce: u64,
    /// `--trace`: requests by send time in `TRACE_MS` buckets of the wall clock.
    pub trace: Option<RefCell<Trace>>,
    /// One moment on both clocks: (monotonic, wall-clock epoch ms), to place a send
    /// on the wall clock (the fault harness notes its faults on it).
    pub wall_base: (Instant, u64),
}

impl ThreadCtx {
    fn record(&self, slot: &Slot, endpoint: Endpoint, status: u16, start: Instant, sent: Instant) {
        let done = Instant::now();
        let latency = done.saturating_duration_since(start).as_micros() as u64;
        let service = done.saturating_duration_since(sent).as_micros() as u64;
        let mut stages = self.stages.borrow_mut();
        stages[slot.stage].record(endpoint, status, latency, service);
        if endpoint.is_span() {
            return;
        }
        if let Some(trace) = &self.trace {
            let (base, base_ms) = self.wall_base;
            let ms = base_ms + sent.saturating_duration_since(base).as_millis() as u64;
            trace
                .borrow_mut()
                .entry(ms - ms % TRACE_MS)
                .or_default()
                .add(endpoint, status, service);
        }
        // Achieved rates count HTTP answers only, not failures or dropped slots.
        let answered = status >= 100;
        if let Some(i) = self
            .windows
            .iter()
            .position(|(a, b)| *a <= done && done < *b)
            .filter(|_| answered)
        {
            stages[i].completed_in_window += 1;
        }
        {
            let mut iv = self.interval.borrow_mut();
            iv.done += u64::from(answered);
            if !endpoint.ok(status) {
                iv.errors += 1;
            }
            iv.latency.saturating_record(latency.max(1));
        }
    }

    /// A status poll saw the order final: commit-to-final is from the commit's send
    /// to the order's `updatedAt` (the worker's PostgreSQL transaction, this machine's
    /// clock), so it does not depend on how often the status is polled.
    fn settled(&self, slot: &Slot, accepted: &Accepted, status_body: &[u8]) {
        let Some(updated_at) = updated_at(status_body) else {
            return;
        };
        let us = updated_at.saturating_sub(accepted.sent_ms) * 1000;
        self.stages.borrow_mut()[slot.stage].record(Endpoint::Settle, 200, us, us);
    }

    fn next_user(&self) -> Option<&User> {
        if self.users.is_empty() {
            return None;
        }
        let i = self.next_user.get();
        self.next_user.set(i + 1);
        Some(&self.users[i % self.users.len()])
    }
}

/// Per connection: its random numbers and its buyer (mixed).
struct ConnState {
    rng: u64,
    buyer: Option<Buyer>,
    /// Indices into the thread's `accepted` not yet seen final.
    pending: VecDeque<usize>,
    buys: u64,
    /// When this connection's last commit was sent (wall-clock milliseconds).
    commit_sent_ms: u64,
    /// Run, thread and connection, for unique idempotency keys: `{nonce}t{thread}c{conn}`.
    tag: String,
}

struct Buyer {
    user: User,
    step: Step,
    failures: u32,
}

enum Step {
    Hold,
    Intent { seat: String },
    Commit { seat: String, intent_id: String },
}

impl ConnState {
    fn new(thread: usize, conn: usize, nonce: u64) -> Self {
        let seed = ((thread as u64) << 32) | conn as u64;
        ConnState {
            tag: format!("{:x}t{thread}c{conn}", nonce % 0x1_0000_0000),
            rng: (0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ nonce) | 1,
            buyer: None,
            pending: VecDeque::new(),
            buys: 0,
            commit_sent_ms: 0,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64: distinct streams per connection, no shared generator.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn section<'a>(&mut self, plan: &'a Plan) -> &'a str {
        let i = (self.next() % plan.sections.len() as u64) as usize;
        &plan.sections[i]
    }

    fn seat(&mut self, plan: &Plan) -> String {
        let section = self.section(plan).to_owned();
        let n = self.next() % u64::from(plan.seats_per_section.max(1)) + 1;
        format!("{section}-{n}")
    }
}

/// Runs one connection until the clock has no slot left.
pub async fn connection(ctx: Rc<ThreadCtx>, id: usize) {
    let mut conn = Conn::new(ctx.addr);
    let _ = conn.ensure_connected().await;
    let mut st = ConnState::new(ctx.thread, id, ctx.nonce);
    while let Some(slot) = ctx.clock.take() {
        let now = Instant::now();
        let waited = now > slot.due;
        if waited && now - slot.due > ctx.drop_after {
            ctx.record(&slot, endpoint_of(ctx.plan.kind), DROPPED, slot.due, now);
            continue;
        }
        if !waited {
            monoio::time::sleep_until(monoio::time::Instant::from_std(slot.due)).await;
        }
        // Latency counts from the due time when no connection was free at it; from the
        // send when this one was (its timer's slack is the tool's, not the server's,
        // and shows as send lag).
        let from = waited.then_some(slot.due);
        if ctx.plan.kind == Kind::Journey {
            journey(&ctx, &mut conn, &mut st, &slot, from).await;
        } else {
            let endpoint = fill(&ctx, &mut conn, &mut st, &slot);
            let status = exchange(&ctx, &mut conn, &slot, endpoint, from).await;
            after(&ctx, &conn, &mut st, &slot, endpoint, status);
        }
    }
    ctx.connects.set(ctx.connects.get() + conn.connects);
}

fn endpoint_of(kind: Kind) -> Endpoint {
    match kind {
        Kind::Ping => Endpoint::Ping,
        Kind::Summary | Kind::Mixed => Endpoint::Summary,
        Kind::Enter => Endpoint::Enter,
        Kind::Hold | Kind::Buy => Endpoint::Hold,
        Kind::RoomStatus => Endpoint::RoomStatus,
        Kind::Status => Endpoint::Status,
        Kind::Journey => Endpoint::Journey,
    }
}

/// Sends the request in `conn.req`, records the answer; the status (or pseudo status).
async fn exchange(
    ctx: &ThreadCtx,
    conn: &mut Conn,
    slot: &Slot,
    endpoint: Endpoint,
    from: Option<Instant>,
) -> u16 {
    let sent = Instant::now();
    if from.is_none() {
        let lag = sent.saturating_duration_since(slot.due).as_micros() as u64;
        ctx.stages.borrow_mut()[slot.stage]
            .send_lag
            .saturating_record(lag.max(1));
    }
    let mut status = match conn.send(ctx.timeout).await {
        Ok(s) => s,
        Err(f) => f.code(),
    };
    // A 409 on hold is a lost race, except HOLD_LIMIT: the run ran out of buyers.
    if endpoint == Endpoint::Hold && status == 409 && find(conn.body(), b"HOLD_LIMIT").is_some() {
        status = HOLD_LIMIT;
    }
    // Every 503 must say when to come back.
    if status == 503 && !conn.retry_after() {
        status = NO_RETRY_AFTER;
    }
    ctx.record(slot, endpoint, status, from.unwrap_or(sent), sent);
    status
}

const READ: u8 = 0;
const BUY: u8 = 1;
const POLL: u8 = 2;
/// The seed's mix, spread over every 10 slots: 7 reads, 2 buying steps, 1 status poll.
const MIX: [u8; 10] = [READ, BUY, READ, READ, POLL, READ, READ, BUY, READ, READ];

/// Writes the slot's request into `conn.req`; which endpoint it calls.
fn fill(ctx: &ThreadCtx, conn: &mut Conn, st: &mut ConnState, slot: &Slot) -> Endpoint {
    let plan = &*ctx.plan;
    conn.req.clear();
    match plan.kind {
        Kind::Ping => {
            write_request(
                &mut conn.req,
                "GET",
                &plan.ping_path,
                plan.read_headers.as_bytes(),
                b"",
            );
            Endpoint::Ping
        }
        Kind::Summary => summary_request(conn, st, plan),
        Kind::Enter => {
            // A new buyer each time, new in every run of an invocation too.
            let body = format!(
                r#"{{"userId":"{}-{}-e{}","eventId":"{}"}}"#,
                plan.run_id, st.tag, slot.index, plan.event
            );
            let abusive = plan.abusers > 0 && slot.index % 100 < u64::from(plan.abuse_pct);
            let (from, endpoint) = if abusive {
                let k = st.next() % u64::from(plan.abusers);
                (Some(format!("192.0.2.{}", k + 1)), Endpoint::AbusiveEnter)
            } else {
                let honest = plan.addresses.map(|n| {
                    let i = st.next() % u64::from(n.max(1));
                    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
                });
                (honest, Endpoint::Enter)
            };
            let header = from
                .map(|a| format!("x-forwarded-for: {a}\r\n"))
                .unwrap_or_default();
            write_request(
                &mut conn.req,
                "POST",
                "/public/enter",
                header.as_bytes(),
                body.as_bytes(),
            );
            endpoint
        }
        Kind::Hold => {
            let seat = st.seat(plan);
            let token = ctx.next_user().map(|u| u.token.as_str()).unwrap_or("none");
            hold_request(&mut conn.req, plan, token, &seat);
            Endpoint::Hold
        }
        Kind::Mixed => match MIX[(slot.index % MIX.len() as u64) as usize] {
            BUY => buy_step(ctx, conn, st),
            POLL => match st.pending.front().copied() {
                Some(i) => {
                    let accepted = ctx.accepted.borrow();
                    let a = &accepted[i];
                    status_request(&mut conn.req, &a.token, &a.idem);
                    Endpoint::Status
                }
                None => summary_request(conn, st, plan),
            },
            _ if slot.index.is_multiple_of(4) => match ctx.next_user() {
                Some(u) => room_status_request(&mut conn.req, &u.token),
                None => summary_request(conn, st, plan),
            },
            _ => summary_request(conn, st, plan),
        },
        Kind::RoomStatus => match ctx.next_user() {
            Some(u) => room_status_request(&mut conn.req, &u.token),
            None => summary_request(conn, st, plan),
        },
        Kind::Status => match st.pending.front().copied() {
            Some(i) => {
                let accepted = ctx.accepted.borrow();
                status_request(&mut conn.req, &accepted[i].token, &accepted[i].idem);
                Endpoint::Status
            }
            None => buy_step(ctx, conn, st),
        },
        Kind::Buy => buy_step(ctx, conn, st),
        Kind::Journey => Endpoint::Journey,
    }
}

fn room_status_request(out: &mut Vec<u8>, token: &str) -> Endpoint {
    let header = format!("x-room-token: {token}\r\n");
    write_request(out, "GET", "/public/room-status", header.as_bytes(), b"");
    Endpoint::RoomStatus
}

fn summary_request(conn: &mut Conn, st: &mut ConnState, plan: &Plan) -> Endpoint {
    let path = format!("/public/summary/{}/{}", plan.event, st.section(plan));
    write_request(
        &mut conn.req,
        "GET",
        &path,
        plan.read_headers.as_bytes(),
        b"",
    );
    Endpoint::Summary
}

fn hold_request(out: &mut Vec<u8>, plan: &Plan, token: &str, seat: &str) {
    let header = format!("x-room-token: {token}\r\n");
    let body = format!(r#"{{"eventId":"{}","seatId":"{seat}"}}"#, plan.event);
    write_request(
        out,
        "POST",
        "/public/hold",
        header.as_bytes(),
        body.as_bytes(),
    );
}

fn intent_request(out: &mut Vec<u8>, plan: &Plan, user: &User, idem: &str, seat: &str) {
    let header = format!(
        "x-room-token: {}\r\nIdempotency-Key: {idem}\r\n",
        user.token
    );
    let body = format!(
        r#"{{"userId":"{}","eventId":"{}","seatIds":["{seat}"]}}"#,
        user.id, plan.event
    );
    write_request(
        out,
        "POST",
        "/confirm/payment-intent",
        header.as_bytes(),
        body.as_bytes(),
    );
}

fn commit_request(
    out: &mut Vec<u8>,
    plan: &Plan,
    user: &User,
    idem: &str,
    intent_id: &str,
    seat: &str,
) {
    let header = format!(
        "x-room-token: {}\r\nIdempotency-Key: {idem}\r\n",
        user.token
    );
    let body = format!(
        r#"{{"intentId":"{intent_id}","eventId":"{}","seatIds":["{seat}"],"userId":"{}"}}"#,
        plan.event, user.id
    );
    write_request(
        out,
        "POST",
        "/confirm/commit",
        header.as_bytes(),
        body.as_bytes(),
    );
}

/// Our idempotency keys are `[A-Za-z0-9-]`: no percent-encoding needed in the query.
pub fn status_request(out: &mut Vec<u8>, token: &str, idem: &str) {
    let header = format!("x-room-token: {token}\r\n");
    let path = format!("/confirm/status?idem={idem}");
    write_request(out, "GET", &path, header.as_bytes(), b"");
}

pub fn summary_path(event: &str, section: &str) -> String {
    format!("/public/summary/{event}/{section}")
}

fn buy_step(ctx: &ThreadCtx, conn: &mut Conn, st: &mut ConnState) -> Endpoint {
    let plan = &*ctx.plan;
    if st.buyer.is_none() {
        match ctx.next_user() {
            Some(u) => {
                st.buyer = Some(Buyer {
                    user: u.clone(),
                    step: Step::Hold,
                    failures: 0,
                })
            }
            None => return summary_request(conn, st, plan),
        }
    }
    let seat = st.seat(plan);
    let key = format!("{}-{}-b{}", plan.run_id, st.tag, st.buys);
    let Some(buyer) = st.buyer.as_ref() else {
        return summary_request(conn, st, plan);
    };
    match &buyer.step {
        Step::Hold => {
            hold_request(&mut conn.req, plan, &buyer.user.token, &seat);
            Endpoint::Hold
        }
        Step::Intent { seat } => {
            let idem = format!("{key}-i");
            intent_request(&mut conn.req, plan, &buyer.user, &idem, seat);
            Endpoint::Intent
        }
        Step::Commit { seat, intent_id } => {
            let idem = format!("{key}-c");
            commit_request(&mut conn.req, plan, &buyer.user, &idem, intent_id, seat);
            st.commit_sent_ms = wall_ms();
            Endpoint::Commit
        }
    }
}

/// What a final order status says, if it is final.
pub fn outcome(body: &[u8]) -> Option<&'static str> {
    // Only the order's status can be CONFIRMED or REJECTED (payments are PENDING,
    // CAPTURED or VOIDED), so a substring look-up is exact.
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    if has(b"\"CONFIRMED\"") {
        Some("CONFIRMED")
    } else if has(b"\"REJECTED\"") {
        Some("REJECTED")
    } else {
        None
    }
}

/// Epoch milliseconds, as the edge and the worker write them.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The order's `updatedAt` in a status body.
fn updated_at(body: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Status {
        order: Order,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Order {
        updated_at: u64,
    }
    serde_json::from_slice::<Status>(body)
        .ok()
        .map(|s| s.order.updated_at)
}

#[derive(Deserialize)]
struct IntentCreated {
    #[serde(rename = "intentId")]
    intent_id: String,
}

#[derive(Deserialize)]
pub struct Entered {
    #[serde(rename = "roomToken")]
    pub room_token: String,
}

#[derive(Deserialize)]
struct RoomStatus {
    ready: bool,
}

/// Learns from the answer (mixed only: the buyer moves on).
fn after(
    ctx: &ThreadCtx,
    conn: &Conn,
    st: &mut ConnState,
    slot: &Slot,
    endpoint: Endpoint,
    status: u16,
) {
    match endpoint {
        Endpoint::Hold if matches!(ctx.plan.kind, Kind::Mixed | Kind::Buy | Kind::Status) => {
            let seat = conn.req_seat();
            if let Some(b) = st.buyer.as_mut() {
                if status == 201 {
                    if let Some(seat) = seat {
                        b.step = Step::Intent { seat };
                    }
                } else {
                    b.failures += 1;
                    // A buyer at the hold limit (or unlucky) gives way to the next one.
                    if b.failures >= 3 {
                        st.buyer = None;
                    }
                }
            }
        }
        Endpoint::Intent => {
            let created = (status == 201)
                .then(|| serde_json::from_slice::<IntentCreated>(conn.body()).ok())
                .flatten();
            if let Some(b) = st.buyer.as_mut() {
                match (created, &b.step) {
                    (Some(c), Step::Intent { seat }) => {
                        b.step = Step::Commit {
                            seat: seat.clone(),
                            intent_id: c.intent_id,
                        }
                    }
                    _ => st.buyer = None,
                }
            }
        }
        Endpoint::Commit => {
            if let Some(b) = st.buyer.take() {
                if status == 202 {
                    let idem = format!("{}-{}-b{}-c", ctx.plan.run_id, st.tag, st.buys);
                    let mut accepted = ctx.accepted.borrow_mut();
                    st.pending.push_back(accepted.len());
                    accepted.push(Accepted {
                        user: b.user.id,
                        token: b.user.token,
                        idem,
                        sent_ms: st.commit_sent_ms,
                        outcome: None,
                    });
                }
            }
            st.buys += 1;
        }
        Endpoint::Status => {
            if let Some(i) = st.pending.pop_front() {
                let mut accepted = ctx.accepted.borrow_mut();
                match outcome(conn.body()).filter(|_| status == 200) {
                    Some(o) if accepted[i].outcome.is_none() => {
                        accepted[i].outcome = Some(o);
                        ctx.settled(slot, &accepted[i], conn.body());
                    }
                    _ => {}
                }
                // `status` keeps polling its orders, final or not; `mixed` only the open.
                if accepted[i].outcome.is_none() || ctx.plan.kind == Kind::Status {
                    st.pending.push_back(i);
                }
            }
        }
        _ => {}
    }
}

impl Conn {
    /// The `seatId` of the hold request just sent (mixed keeps no copy of it).
    fn req_seat(&self) -> Option<String> {
        let at = find(&self.req, br#""seatId":""#)? + 10;
        let len = find(&self.req[at..], b"\"")?;
        std::str::from_utf8(&self.req[at..at + len])
            .ok()
            .map(str::to_owned)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One buyer from arrival to a final status; records every request and the whole.
async fn journey(
    ctx: &ThreadCtx,
    conn: &mut Conn,
    st: &mut ConnState,
    slot: &Slot,
    from: Option<Instant>,
) {
    let plan = &*ctx.plan;
    let began = from.unwrap_or_else(Instant::now);
    // The run's tag: the runs of one invocation (stepup, a max search) enter new buyers.
    let user_id = format!("{}-{}-j{}", plan.run_id, st.tag, slot.index);
    let result = journey_steps(ctx, conn, st, slot, from, &user_id).await;
    let status = match result {
        Ok("CONFIRMED") => 200,
        Ok(_) => 409,
        Err(code) => code,
    };
    ctx.record(slot, Endpoint::Journey, status, began, began);
}

/// The journey's requests; the order's final status, or the status that stopped it.
async fn journey_steps(
    ctx: &ThreadCtx,
    conn: &mut Conn,
    st: &mut ConnState,
    slot: &Slot,
    from: Option<Instant>,
    user_id: &str,
) -> Result<&'static str, u16> {
    let plan = &*ctx.plan;
    let deadline = Instant::now() + plan.journey_timeout;
    let poll = || monoio::time::sleep(plan.poll);

    conn.req.clear();
    let body = format!(r#"{{"userId":"{user_id}","eventId":"{}"}}"#, plan.event);
    write_request(&mut conn.req, "POST", "/public/enter", b"", body.as_bytes());
    let status = exchange(ctx, conn, slot, Endpoint::Enter, from).await;
    let entered = (status == 200)
        .then(|| serde_json::from_slice::<Entered>(conn.body()).ok())
        .flatten()
        .ok_or(status)?;
    let user = User {
        id: user_id.to_owned(),
        token: entered.room_token,
    };
    let token_header = format!("x-room-token: {}\r\n", user.token);

    loop {
        conn.req.clear();
        write_request(
            &mut conn.req,
            "GET",
            "/public/room-status",
            token_header.as_bytes(),
            b"",
        );
        let status = exchange(ctx, conn, slot, Endpoint::RoomStatus, None).await;
        let ready = (status == 200)
            .then(|| serde_json::from_slice::<RoomStatus>(conn.body()).ok())
            .flatten()
            .ok_or(status)?
            .ready;
        if ready {
            break;
        }
        if Instant::now() > deadline {
            return Err(Failure::Timeout.code());
        }
        poll().await;
    }

    let mut seat = st.seat(plan);
    for attempt in 0.. {
        conn.req.clear();
        hold_request(&mut conn.req, plan, &user.token, &seat);
        match exchange(ctx, conn, slot, Endpoint::Hold, None).await {
            201 => break,
            409 if attempt < 10 => seat = st.seat(plan),
            other => return Err(other),
        }
    }

    let intent_idem = format!("{user_id}-i");
    conn.req.clear();
    intent_request(&mut conn.req, plan, &user, &intent_idem, &seat);
    let status = exchange(ctx, conn, slot, Endpoint::Intent, None).await;
    let intent = (status == 201)
        .then(|| serde_json::from_slice::<IntentCreated>(conn.body()).ok())
        .flatten()
        .ok_or(status)?;

    let idem = format!("{user_id}-c");
    conn.req.clear();
    commit_request(&mut conn.req, plan, &user, &idem, &intent.intent_id, &seat);
    let sent_ms = wall_ms();
    let status = exchange(ctx, conn, slot, Endpoint::Commit, None).await;
    if status != 202 {
        return Err(status);
    }
    let index = {
        let mut accepted = ctx.accepted.borrow_mut();
        accepted.push(Accepted {
            user: user.id.clone(),
            token: user.token.clone(),
            idem: idem.clone(),
            sent_ms,
            outcome: None,
        });
        accepted.len() - 1
    };

    loop {
        poll().await;
        conn.req.clear();
        status_request(&mut conn.req, &user.token, &idem);
        let status = exchange(ctx, conn, slot, Endpoint::Status, None).await;
        if let Some(o) = outcome(conn.body()).filter(|_| status == 200) {
            let mut accepted = ctx.accepted.borrow_mut();
            accepted[index].outcome = Some(o);
            ctx.settled(slot, &accepted[index], conn.body());
            return Ok(o);
        }
        if Instant::now() > deadline {
            return Err(Failure::Timeout.code());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_reads_the_order_status_only() {
        let pending = br#"{"order":{"status":"PENDING"},"payment":{"status":"PENDING"}}"#;
        let done = br#"{"order":{"status":"CONFIRMED"},"payment":{"status":"CAPTURED"}}"#;
        assert_eq!(outcome(pending), None);
        assert_eq!(outcome(done), Some("CONFIRMED"));
        let stored = br#"{"order":{"idem":"k","status":"CONFIRMED","updatedAt":1796119292250},"payment":{}}"#;
        assert_eq!(updated_at(stored), Some(1_796_119_292_250));
        assert_eq!(updated_at(done), None);
    }

    #[test]
    fn runs_draw_their_own_seats_and_keys() {
        let plan = Plan {
            kind: Kind::Buy,
            event: "e".into(),
            sections: vec!["A".into(), "B".into()],
            seats_per_section: 1_000_000,
            run_id: "r".into(),
            ping_path: "/".into(),
            read_headers: String::new(),
            poll: Duration::from_millis(1),
            journey_timeout: Duration::from_secs(1),
            addresses: None,
            abusers: 0,
            abuse_pct: 0,
        };
        let seats = |nonce| {
            let mut st = ConnState::new(0, 0, nonce);
            let seats: Vec<String> = (0..8).map(|_| st.seat(&plan)).collect();
            (st.tag, seats)
        };
        let (first, again, next) = (seats(1), seats(1), seats(2));
        assert_eq!(first, again, "one run is one sequence");
        assert_ne!(first.0, next.0, "another run, other idempotency keys");
        assert_ne!(first.1, next.1, "another run, other seats");
    }

    #[test]
    fn the_mix_is_seven_two_one() {
        let count = |k| MIX.iter().filter(|m| **m == k).count();
        assert_eq!((count(READ), count(BUY), count(POLL)), (7, 2, 1));
    }
}
