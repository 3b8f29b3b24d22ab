//! The edge's side of the storage protocol (`codec::store`): each core's handles on
//! the scripts, and one method a script that runs a typed call and returns its typed
//! outcome. Handlers see these outcomes, never a RESP frame.

use std::rc::Rc;

use codec::{
    contract::AdmissionState,
    store::{
        scripts, AdmissionRefusal, Call, Commit, Enter, EnterOutcome, Hold, HoldOutcome,
        Idempotent, Intent, Place, Poll, Release, Revoke, SeatStates, Section, SetAdmission,
    },
};

use crate::{
    error::Error,
    redis::{BatchScript, Client, Frame, Script},
};

/// The most calls in one batch of `enter` or `hold`: 64 keep Redis busy a few hundred µs.
const BATCH: usize = 64;

/// One core's scripts, on its Redis connection.
pub struct Store {
    pub redis: Client,
    /// `callgrind` of redis-server, 1,600 new buyers: 29.9k instructions an entry one
    /// script call each, 22.9k in batches of 8, 20.6k of 32 (36.8k alone in a batch: at
    /// low load, where Redis has time to spare). At the opening of a sale everyone
    /// enters at once.
    enter: Rc<BatchScript>,
    /// `room-status` in an active-limited line: presence, batched like `enter`.
    poll: Rc<BatchScript>,
    /// Run for every hold a core takes before its next write to Redis: the script
    /// call's fixed cost and the clock are paid once a batch. `callgrind` of
    /// redis-server (`perf/callgrind-script.sh`, 3,200 holds of 800 buyers): 90k
    /// instructions a hold one script call each, 52k in batches of 8, 45k of 32 (the
    /// script before 26d13cc: 102k, 66k, 61k).
    hold: Rc<BatchScript>,
    release: Script,
    summary: Script,
    seats: Script,
    admission: Script,
    intent: Script,
    commit: Script,
    commit_finish: Script,
    commit_abort: Script,
    revoke: Script,
}

impl Store {
    /// `hold_ttl_ms` and `hold_limit` are the hold script's shared arguments.
    pub fn new(redis: Client, hold_ttl_ms: u64, hold_limit: u32) -> Self {
        Self {
            redis,
            enter: Rc::new(BatchScript::new(scripts::ENTER, Vec::new(), BATCH)),
            poll: Rc::new(BatchScript::new(scripts::POLL, Vec::new(), BATCH)),
            hold: Rc::new(BatchScript::new(
                scripts::HOLD,
                Hold::shared(hold_ttl_ms, hold_limit),
                BATCH,
            )),
            release: Script::new(scripts::RELEASE),
            summary: Script::new(scripts::SUMMARY),
            seats: Script::new(scripts::SEATS),
            admission: Script::new(scripts::ADMISSION),
            intent: Script::new(scripts::INTENT),
            commit: Script::new(scripts::COMMIT),
            commit_finish: Script::new(scripts::COMMIT_FINISH),
            commit_abort: Script::new(scripts::COMMIT_ABORT),
            revoke: Script::new(scripts::REVOKE),
        }
    }

    /// The buyer's position in the event's line (batched with the core's other entries).
    pub async fn enter(&self, enter: &Enter<'_>) -> Result<EnterOutcome, Error> {
        let mut call = Call::with_capacity(160, 7);
        enter.call(&mut call);
        let group = enter.event.as_bytes();
        let reply = self.redis.run_batched(&self.enter, group, &call).await?;
        Ok(Enter::decode(&reply)?)
    }

    /// The buyer is still there: their live place (batched with the core's other polls).
    pub async fn poll(&self, poll: &Poll<'_>) -> Result<Place, Error> {
        let mut call = Call::with_capacity(160, 7);
        poll.call(&mut call);
        let group = poll.event.as_bytes();
        let reply = self.redis.run_batched(&self.poll, group, &call).await?;
        Ok(Poll::decode(&reply)?)
    }

    /// Takes a seat's hold (batched with the core's other holds).
    pub async fn hold(&self, hold: &Hold<'_>) -> Result<HoldOutcome, Error> {
        let mut call = Call::with_capacity(160, 8);
        hold.call(&mut call);
        let group = hold.event.as_bytes();
        let reply = self.redis.run_batched(&self.hold, group, &call).await?;
        Ok(Hold::decode(&reply)?)
    }

    pub async fn release(&self, release: &Release<'_>) -> Result<bool, Error> {
        let mut call = Call::with_capacity(160, 7);
        release.call(&mut call);
        let reply = self.redis.run(&self.release, &call).await?;
        Ok(Release::decode(&reply)?)
    }

    /// A section's (sold, held) seats; `None` when Redis has no copy of the event.
    pub async fn counts(&self, section: &Section<'_>) -> Result<Option<(u64, u64)>, Error> {
        let mut call = Call::with_capacity(96, 3);
        section.call(&mut call);
        let reply = self.redis.run(&self.summary, &call).await?;
        Ok(Section::decode_counts(&reply)?)
    }

    /// Every section's seat states, all asked before the first reply is awaited (one
    /// write); `each` gets them in the order of `sections`. False, with `each` called for
    /// none, when Redis has no copy of the event.
    pub async fn seat_states(
        &self,
        sections: &[Section<'_>],
        mut each: impl FnMut(usize, SeatStates<'_>),
    ) -> Result<bool, Error> {
        let calls: Vec<Call> = sections
            .iter()
            .map(|s| {
                let mut call = Call::with_capacity(96, 3);
                s.call(&mut call);
                call
            })
            .collect();
        let replies: Vec<_> = calls
            .iter()
            .map(|call| self.redis.run(&self.seats, call))
            .collect();
        let mut got: Vec<Frame> = Vec::with_capacity(replies.len());
        for reply in replies {
            got.push(reply.await?);
        }
        let states = got.iter().map(Section::decode_states);
        let Some(states) = states.collect::<Result<Option<Vec<_>>, _>>()? else {
            return Ok(false);
        };
        states.into_iter().enumerate().for_each(|(i, s)| each(i, s));
        Ok(true)
    }

    pub async fn set_admission(
        &self,
        set: &SetAdmission<'_>,
    ) -> Result<Result<AdmissionState, AdmissionRefusal>, Error> {
        let mut call = Call::with_capacity(256, 8);
        set.call(&mut call);
        let reply = self.redis.run(&self.admission, &call).await?;
        Ok(SetAdmission::decode(&reply)?)
    }

    /// Runs `intent.lua`; `body` gets the outcome (it borrows the reply).
    pub async fn intent<T>(
        &self,
        intent: &Intent<'_>,
        then: impl FnOnce(Idempotent<'_>) -> T,
    ) -> Result<T, Error> {
        let mut call = Call::with_capacity(512, 16);
        intent.call(&mut call);
        let reply = self.redis.run(&self.intent, &call).await?;
        Ok(then(Intent::decode(&reply)?))
    }

    /// Runs `commit.lua`; `then` gets the outcome (it borrows the reply).
    pub async fn commit<T>(
        &self,
        commit: &Commit<'_>,
        then: impl FnOnce(Idempotent<'_>) -> T,
    ) -> Result<T, Error> {
        let mut call = Call::with_capacity(1024, 24);
        commit.call(&mut call);
        let reply = self.redis.run(&self.commit, &call).await?;
        Ok(then(Commit::decode(&reply)?))
    }

    pub async fn commit_finish(&self, commit: &Commit<'_>) -> Result<(), Error> {
        let mut call = Call::with_capacity(512, 6);
        commit.finish(&mut call);
        self.redis.run(&self.commit_finish, &call).await?;
        Ok(())
    }

    pub async fn commit_abort(&self, commit: &Commit<'_>) -> Result<(), Error> {
        let mut call = Call::with_capacity(256, 2);
        commit.abort(&mut call);
        self.redis.run(&self.commit_abort, &call).await?;
        Ok(())
    }

    /// Revokes a buyer and releases the holds in `held`; returns how many it released.
    pub async fn revoke(&self, revoke: &Revoke<'_>) -> Result<u64, Error> {
        let mut call = Call::with_capacity(256, 4 + 4 * revoke.held.len());
        revoke.call(&mut call);
        let reply = self.redis.run(&self.revoke, &call).await?;
        Ok(Revoke::decode(&reply)?)
    }

    /// The members of a sorted set (`ZRANGE key 0 -1`), e.g. a buyer's held seats.
    pub async fn members(&self, key: &[u8]) -> Result<Vec<bytes::Bytes>, Error> {
        match self.redis.query(&[b"ZRANGE", key, b"0", b"-1"]).await? {
            Frame::Array(items) => Ok(items
                .into_iter()
                .filter_map(|f| match f {
                    Frame::BulkString(b) => Some(b),
                    _ => None,
                })
                .collect()),
            _ => Err(Error::Internal {
                message: "unexpected reply from storage",
                cause: "ZRANGE answered no array".into(),
            }),
        }
    }

    /// A string key's value (`GET`), `None` when there is none.
    pub async fn get(&self, key: &[u8]) -> Result<Option<bytes::Bytes>, Error> {
        match self.redis.query(&[b"GET", key]).await? {
            Frame::BulkString(value) => Ok(Some(value)),
            Frame::Null => Ok(None),
            _ => Err(Error::Internal {
                message: "unexpected reply from storage",
                cause: "GET answered neither a string nor nil".into(),
            }),
        }
    }
}
