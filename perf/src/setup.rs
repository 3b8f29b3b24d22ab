//! Before a run: buyers enter the waiting room (closed loop, as fast as the edge answers)
//! so the measured phase carries real room tokens.

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

use crate::{
    client::{write_request, Conn},
    run::Driver,
    scenario::{Entered, User},
};

/// How entering went.
#[derive(Debug, Clone)]
pub struct Entry {
    pub users: Vec<User>,
    pub failed: u64,
    pub seconds: f64,
}

/// Enters `count` users `{prefix}-u{i}` into `event` over `connections` connections.
pub fn enter_users(
    addr: SocketAddr,
    event: &str,
    prefix: &str,
    count: usize,
    connections: usize,
    driver: Driver,
) -> Entry {
    let started = Instant::now();
    let body = {
        let (event, prefix) = (event.to_owned(), prefix.to_owned());
        async move {
            let next = Rc::new(Cell::new(0usize));
            let failed = Rc::new(Cell::new(0u64));
            let users: Rc<RefCell<Vec<Option<User>>>> =
                Rc::new(RefCell::new((0..count).map(|_| None).collect()));
            let tasks: Vec<_> = (0..connections.clamp(1, count.max(1)))
                .map(|_| {
                    let (next, failed, users) = (next.clone(), failed.clone(), users.clone());
                    let (event, prefix) = (event.clone(), prefix.clone());
                    monoio::spawn(async move {
                        let mut conn = Conn::new(addr);
                        loop {
                            let i = next.get();
                            if i >= count {
                                break;
                            }
                            next.set(i + 1);
                            let id = format!("{prefix}-u{i}");
                            let body = format!(r#"{{"userId":"{id}","eventId":"{event}"}}"#);
                            conn.req.clear();
                            write_request(
                                &mut conn.req,
                                "POST",
                                "/public/enter",
                                b"",
                                body.as_bytes(),
                            );
                            let entered = match conn.send(Duration::from_secs(10)).await {
                                Ok(200) => serde_json::from_slice::<Entered>(conn.body()).ok(),
                                _ => None,
                            };
                            match entered {
                                Some(e) => {
                                    users.borrow_mut()[i] = Some(User {
                                        id,
                                        token: e.room_token,
                                    })
                                }
                                None => failed.set(failed.get() + 1),
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await;
            }
            let users: Vec<User> = users.take().into_iter().flatten().collect();
            (users, failed.get())
        }
    };
    let (users, failed) = match driver {
        Driver::Uring => RuntimeBuilder::<IoUringDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(body)),
        Driver::Epoll => RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(body)),
    }
    .unwrap_or_else(|e| {
        eprintln!("loadgen: runtime for entering users: {e}");
        (Vec::new(), count as u64)
    });
    Entry {
        users,
        failed,
        seconds: started.elapsed().as_secs_f64(),
    }
}
