//! Admission: whether a call gets its existing session, a new one, or must wait, evict or be
//! refused. A pure decision over the registry, taken in one short critical section: no runtime,
//! no backend, no clock of its own (the caller says whether its time is up), so each policy is
//! tested here alone, down to "never more reservations than the limits, whatever the
//! interleaving".
//!
//! To add a policy: a [`LimitPolicy`] variant, its arm in [`decide`] (what to do at a limit), and
//! the caller's reaction to any new [`Decision`] in `execute.rs`.

use std::time::Duration;

use msbw_backend::{SandboxId, Template};
use msbw_config::{LimitPolicy, SandboxFlavor, WrapperConfig};

use crate::error::{LimitExceeded, ManagerError, Resource, SessionMismatch};
use crate::session::Registry;

/// The limits admission enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// `max_concurrent_sessions`.
    pub(crate) max_sessions: u32,
    /// `max_total_memory_mb`.
    pub(crate) max_memory_mb: Option<u64>,
    /// What happens at a limit.
    pub(crate) policy: LimitPolicy,
}

impl Limits {
    /// The limits a configuration sets.
    pub(crate) fn of(config: &WrapperConfig) -> Self {
        Limits {
            max_sessions: config.max_concurrent_sessions,
            max_memory_mb: config.max_total_memory_mb,
            policy: config.limit_policy,
        }
    }
}

/// The reservations held: one session and its flavor's memory per sandbox that may exist (live
/// sessions and sandboxes still being stopped).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ledger {
    sessions: u64,
    memory_mb: u64,
}

/// Which limit is in the way of a reservation, and by how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shortfall {
    resource: Resource,
    usage: u64,
    limit: u64,
    requested: u64,
}

impl Ledger {
    /// Sessions reserved.
    #[cfg(test)]
    pub(crate) fn sessions(&self) -> u64 {
        self.sessions
    }

    /// Memory reserved, in MB.
    pub(crate) fn memory_mb(&self) -> u64 {
        self.memory_mb
    }

    /// Takes a reservation for a sandbox of `flavor`, or says which limit is in the way.
    pub(crate) fn try_reserve(&mut self, flavor: SandboxFlavor, limits: &Limits) -> Result<(), Shortfall> {
        if self.sessions >= u64::from(limits.max_sessions) {
            return Err(Shortfall {
                resource: Resource::Sessions,
                usage: self.sessions,
                limit: u64::from(limits.max_sessions),
                requested: 1,
            });
        }
        let need = u64::from(flavor.memory_mb());
        if let Some(limit) = limits.max_memory_mb
            && self.memory_mb + need > limit
        {
            return Err(Shortfall {
                resource: Resource::MemoryMb,
                usage: self.memory_mb,
                limit,
                requested: need,
            });
        }
        self.sessions += 1;
        self.memory_mb += need;
        Ok(())
    }

    /// Gives back the reservation of a sandbox of `flavor`.
    pub(crate) fn release(&mut self, flavor: SandboxFlavor) {
        self.sessions = self.sessions.saturating_sub(1);
        self.memory_mb = self.memory_mb.saturating_sub(u64::from(flavor.memory_mb()));
    }
}

/// What a call asks admission for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) template: Template,
    pub(crate) flavor: SandboxFlavor,
    /// Whether the session may be created when it does not exist.
    pub(crate) may_create: bool,
    /// Whether a new session may claim a warm-pool sandbox (it asks for no volumes or
    /// environment of its own, which a sandbox started ahead cannot have).
    pub(crate) poolable: bool,
}

/// Where the call is in its admission loop.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Progress {
    /// Sessions this call has evicted so far.
    pub(crate) evictions: u32,
    /// Whether the call's time to wait for a slot is up.
    pub(crate) out_of_time: bool,
    /// How long it has waited (reported in a limit error under the `wait` policy).
    pub(crate) waited: Option<Duration>,
}

/// What the call does next.
#[derive(Debug)]
pub(crate) enum Decision {
    /// The session exists with the call's template and flavor: use it (it never counts again).
    Reuse,
    /// A reservation was taken for a new session: create it (or give the reservation back).
    Create,
    /// A ready warm-pool sandbox of the call's template and flavor serves the new session: claim
    /// it (its reservation becomes the session's).
    Claim(SandboxId),
    /// At a limit, with sandboxes in the warm pool: retire this pooled sandbox (`starting`: its
    /// start has not ended yet), then ask again. The pool yields to real sessions.
    YieldPooled {
        sandbox: SandboxId,
        flavor: SandboxFlavor,
        starting: bool,
    },
    /// At a limit under `wait`: wait for a freed slot, then ask again.
    Wait,
    /// At a limit under `evict`: retire this idle session, stop it, then ask again.
    Evict(String),
    /// At a limit under `evict` with no idle victim, but sandboxes are being stopped: wait for
    /// them, then ask again.
    AwaitStops,
    /// Refused.
    Reject(ManagerError),
}

/// One admission decision. It mutates the registry only to take the reservation of
/// [`Decision::Create`]; the caller applies every other decision.
pub(crate) fn decide(reg: &mut Registry, ask: &Ask<'_>, progress: &Progress, limits: &Limits) -> Decision {
    if let Some(entry) = reg.session(ask.session_id) {
        if entry.template() != ask.template || entry.flavor() != ask.flavor {
            return Decision::Reject(ManagerError::SessionMismatch(SessionMismatch {
                session_id: ask.session_id.to_owned(),
                existing_template: entry.template(),
                existing_flavor: entry.flavor(),
                requested_template: ask.template,
                requested_flavor: ask.flavor,
            }));
        }
        return Decision::Reuse;
    }
    if !ask.may_create {
        return Decision::Reject(ManagerError::SessionNotFound {
            session_id: ask.session_id.to_owned(),
        });
    }
    if ask.poolable
        && let Some(sandbox) = reg.pool().claimable(ask.template, ask.flavor)
    {
        return Decision::Claim(sandbox);
    }
    let shortfall = match reg.ledger_mut().try_reserve(ask.flavor, limits) {
        Ok(()) => {
            reg.pool_mut().admitted();
            return Decision::Create;
        }
        Err(shortfall) => shortfall,
    };
    if let Some((sandbox, flavor, starting)) = reg.pool().victim() {
        return Decision::YieldPooled {
            sandbox,
            flavor,
            starting,
        };
    }
    let limit_error = ManagerError::ResourceLimit(LimitExceeded {
        resource: shortfall.resource,
        usage: shortfall.usage,
        limit: shortfall.limit,
        requested: shortfall.requested,
        waited: if limits.policy == LimitPolicy::Wait {
            progress.waited
        } else {
            None
        },
    });
    match limits.policy {
        LimitPolicy::Reject => Decision::Reject(limit_error),
        LimitPolicy::Wait if progress.out_of_time => Decision::Reject(limit_error),
        LimitPolicy::Wait => {
            reg.note_waiter(u64::from(ask.flavor.memory_mb()));
            Decision::Wait
        }
        LimitPolicy::Evict => {
            let victim = reg
                .sessions()
                .filter(|e| e.is_idle())
                .min_by_key(|e| e.last_accessed)
                .map(|e| e.id().to_owned());
            match victim {
                // Bounded, so that callers cannot evict each other's fresh sessions for ever.
                Some(victim) if progress.evictions < limits.max_sessions => Decision::Evict(victim),
                _ if reg.retiring_count() > 0 && !progress.out_of_time => Decision::AwaitStops,
                _ => Decision::Reject(limit_error),
            }
        }
    }
}

/// Whom to wake after a reservation was given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// This many waiters (one by one, in the order they came): each can take a slot now.
    Some(usize),
    /// Every waiter: the freed room may fit some and not others.
    All,
}

/// Whom a freed reservation should wake, so that the cost of a release stays flat in the number
/// of waiters. Without a memory limit a freed slot fits any waiter: one. With one, when every
/// waiting caller asks for the same memory, as many as now fit (a large sandbox's memory may fit
/// several small ones), at least one; otherwise all, since the room may fit a later waiter and
/// not the first. A waiter that loses its slot to a newcomer finds no room and waits again, so no
/// wake-up is lost.
pub(crate) fn wakeups(reg: &Registry, limits: &Limits) -> Wake {
    let Some(max_memory) = limits.max_memory_mb else {
        return Wake::Some(1);
    };
    match reg.waiting_need() {
        Some((least, most)) if least == most && least > 0 => {
            let ledger = reg.ledger();
            let free_sessions = u64::from(limits.max_sessions).saturating_sub(ledger.sessions);
            let fit = free_sessions.min(max_memory.saturating_sub(ledger.memory_mb) / least);
            let fit = usize::try_from(fit).unwrap_or(usize::MAX);
            Wake::Some(fit.clamp(1, reg.waiting.max(1)))
        }
        _ => Wake::All,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::session::{Entry, SessionStatus};

    fn limits(max_sessions: u32, max_memory_mb: Option<u64>, policy: LimitPolicy) -> Limits {
        Limits {
            max_sessions,
            max_memory_mb,
            policy,
        }
    }

    fn ask(id: &str, flavor: SandboxFlavor) -> Ask<'_> {
        Ask {
            session_id: id,
            template: Template::Python,
            flavor,
            may_create: true,
            poolable: true,
        }
    }

    /// Applies a `Create` as the manager does: a new entry, held by its call.
    fn create(reg: &mut Registry, id: &str, flavor: SandboxFlavor) {
        let token = reg.token();
        let sandbox = SandboxId {
            namespace: "default".into(),
            name: format!("m-{id}-{token:010x}"),
        };
        reg.insert(Entry::new(id, token, Template::Python, flavor, sandbox, Arc::default()));
    }

    /// Asks for session `id` of `flavor`, which must be admitted as a new session, and adds it.
    fn admitted(reg: &mut Registry, id: &str, flavor: SandboxFlavor, l: &Limits) {
        let d = decide(reg, &ask(id, flavor), &Progress::default(), l);
        assert!(matches!(d, Decision::Create), "{id}: {d:?}");
        create(reg, id, flavor);
    }

    /// Ends the call that holds `id`: the session becomes idle.
    fn finish(reg: &mut Registry, id: &str) {
        if let Some(e) = reg.session_mut(id) {
            e.active_calls = e.active_calls.saturating_sub(1);
            e.status = SessionStatus::Ready;
        }
    }

    #[test]
    fn an_existing_session_is_reused_without_a_reservation() {
        let mut reg = Registry::default();
        let l = limits(1, None, LimitPolicy::Reject);
        admitted(&mut reg, "a", SandboxFlavor::Small, &l);
        for _ in 0..3 {
            assert!(matches!(
                decide(&mut reg, &ask("a", SandboxFlavor::Small), &Progress::default(), &l),
                Decision::Reuse
            ));
        }
        assert_eq!(reg.ledger().sessions(), 1);
    }

    #[test]
    fn another_template_or_flavor_is_a_mismatch_and_a_missing_session_may_be_refused() {
        let mut reg = Registry::default();
        let l = limits(4, None, LimitPolicy::Reject);
        admitted(&mut reg, "a", SandboxFlavor::Small, &l);
        let d = decide(&mut reg, &ask("a", SandboxFlavor::Large), &Progress::default(), &l);
        assert!(matches!(d, Decision::Reject(ManagerError::SessionMismatch(_))), "{d:?}");
        let mut must_exist = ask("b", SandboxFlavor::Small);
        must_exist.may_create = false;
        let d = decide(&mut reg, &must_exist, &Progress::default(), &l);
        assert!(
            matches!(d, Decision::Reject(ManagerError::SessionNotFound { .. })),
            "{d:?}"
        );
        assert_eq!(reg.ledger().sessions(), 1);
    }

    #[test]
    fn each_policy_at_the_limit() {
        let full = |policy| {
            let mut reg = Registry::default();
            let l = limits(1, None, policy);
            admitted(&mut reg, "a", SandboxFlavor::Small, &l);
            (reg, l)
        };
        let (mut reg, l) = full(LimitPolicy::Reject);
        let d = decide(&mut reg, &ask("b", SandboxFlavor::Small), &Progress::default(), &l);
        assert!(
            matches!(
                d,
                Decision::Reject(ManagerError::ResourceLimit(LimitExceeded {
                    usage: 1,
                    limit: 1,
                    waited: None,
                    ..
                }))
            ),
            "{d:?}"
        );

        let (mut reg, l) = full(LimitPolicy::Wait);
        assert!(matches!(
            decide(&mut reg, &ask("b", SandboxFlavor::Small), &Progress::default(), &l),
            Decision::Wait
        ));
        let late = Progress {
            out_of_time: true,
            waited: Some(Duration::from_secs(5)),
            ..Progress::default()
        };
        let d = decide(&mut reg, &ask("b", SandboxFlavor::Small), &late, &l);
        assert!(
            matches!(
                d,
                Decision::Reject(ManagerError::ResourceLimit(LimitExceeded { waited: Some(_), .. }))
            ),
            "{d:?}"
        );

        let (mut reg, l) = full(LimitPolicy::Evict);
        // Busy: no victim, nothing being stopped: refused.
        let d = decide(&mut reg, &ask("b", SandboxFlavor::Small), &Progress::default(), &l);
        assert!(matches!(d, Decision::Reject(ManagerError::ResourceLimit(_))), "{d:?}");
        finish(&mut reg, "a");
        let d = decide(&mut reg, &ask("b", SandboxFlavor::Small), &Progress::default(), &l);
        assert!(matches!(&d, Decision::Evict(v) if v == "a"), "{d:?}");
        reg.retire("a");
        // Its stop is in progress: wait for it rather than fail.
        assert!(matches!(
            decide(&mut reg, &ask("b", SandboxFlavor::Small), &Progress::default(), &l),
            Decision::AwaitStops
        ));
    }

    #[test]
    fn the_memory_limit_counts_the_flavor() {
        let mut reg = Registry::default();
        let l = limits(10, Some(3072), LimitPolicy::Reject);
        admitted(&mut reg, "m", SandboxFlavor::Medium, &l);
        let d = decide(&mut reg, &ask("m2", SandboxFlavor::Medium), &Progress::default(), &l);
        assert!(
            matches!(
                d,
                Decision::Reject(ManagerError::ResourceLimit(LimitExceeded {
                    resource: Resource::MemoryMb,
                    usage: 2048,
                    requested: 2048,
                    ..
                }))
            ),
            "{d:?}"
        );
        assert!(matches!(
            decide(&mut reg, &ask("s", SandboxFlavor::Small), &Progress::default(), &l),
            Decision::Create
        ));
        assert_eq!(reg.ledger().memory_mb(), 3072);
    }

    /// One step of an interleaving.
    #[derive(Debug, Clone)]
    enum Op {
        /// A call for session `n` with a flavor.
        Ask(u8, SandboxFlavor),
        /// The call holding session `n` ends.
        Finish(u8),
        /// Session `n`'s start fails: it is forgotten and its reservation given back.
        FailStart(u8),
        /// Session `n` is retired (idle cleanup, stop_session).
        Retire(u8),
        /// The `k`-th retiring sandbox's stop ends, successfully or not.
        EndStop(u8, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        let flavor = prop::sample::select(vec![SandboxFlavor::Small, SandboxFlavor::Medium, SandboxFlavor::Large]);
        prop_oneof![
            4 => (0u8..12, flavor).prop_map(|(n, f)| Op::Ask(n, f)),
            2 => (0u8..12).prop_map(Op::Finish),
            1 => (0u8..12).prop_map(Op::FailStart),
            1 => (0u8..12).prop_map(Op::Retire),
            2 => (0u8..12, any::<bool>()).prop_map(|(k, ok)| Op::EndStop(k, ok)),
        ]
    }

    proptest! {
        /// Whatever the interleaving of calls, ends, failed starts, retirements and stops: the
        /// reservations never exceed the limits, and always equal what live and retiring
        /// sandboxes hold.
        #[test]
        fn never_more_reservations_than_the_limits(
            max_sessions in 1u32..6,
            max_memory in prop::option::of(1024u64..8192),
            policy in prop::sample::select(vec![LimitPolicy::Reject, LimitPolicy::Wait, LimitPolicy::Evict]),
            ops in prop::collection::vec(op(), 1..200),
        ) {
            let l = limits(max_sessions, max_memory, policy);
            let mut reg = Registry::default();
            let mut retiring: Vec<(SandboxId, SandboxFlavor)> = Vec::new();
            for op in ops {
                match op {
                    Op::Ask(n, flavor) => {
                        let id = format!("s{n}");
                        match decide(&mut reg, &ask(&id, flavor), &Progress::default(), &l) {
                            Decision::Create => create(&mut reg, &id, flavor),
                            Decision::Reuse => {
                                if let Some(e) = reg.session_mut(&id) {
                                    e.active_calls += 1;
                                }
                            }
                            Decision::Evict(victim) => {
                                let flavor = reg.session(&victim).map(|e| e.flavor());
                                let sandbox = reg.retire(&victim);
                                match (sandbox, flavor) {
                                    (Some(sandbox), Some(flavor)) => retiring.push((sandbox, flavor)),
                                    _ => prop_assert!(false, "the victim {} is not a live session", victim),
                                }
                            }
                            Decision::Wait | Decision::AwaitStops | Decision::Reject(_) => {}
                            Decision::Claim(_) | Decision::YieldPooled { .. } => prop_assert!(false, "no pool here"),
                        }
                    }
                    Op::Finish(n) => finish(&mut reg, &format!("s{n}")),
                    Op::FailStart(n) => {
                        reg.forget(&format!("s{n}"));
                    }
                    Op::Retire(n) => {
                        let id = format!("s{n}");
                        let flavor = reg.session(&id).map(|e| e.flavor());
                        if let (Some(sandbox), Some(flavor)) = (reg.retire(&id), flavor) {
                            retiring.push((sandbox, flavor));
                        }
                    }
                    Op::EndStop(k, ok) => {
                        if !retiring.is_empty() {
                            let i = usize::from(k) % retiring.len();
                            let failure = (!ok).then(|| "injected".to_owned());
                            if reg.end_stop(&retiring[i].0, failure).is_some() {
                                retiring.swap_remove(i);
                            }
                        }
                    }
                }
                let ledger = *reg.ledger();
                prop_assert!(ledger.sessions() <= u64::from(max_sessions), "{ledger:?}");
                if let Some(max) = max_memory {
                    prop_assert!(ledger.memory_mb() <= max, "{ledger:?} over {max}");
                }
                let held: u64 = reg.sessions().map(|e| u64::from(e.flavor().memory_mb()))
                    .chain(retiring.iter().map(|(_, f)| u64::from(f.memory_mb())))
                    .sum();
                prop_assert_eq!(ledger.sessions(), (reg.session_count() + retiring.len()) as u64);
                prop_assert_eq!(ledger.memory_mb(), held);
                prop_assert_eq!(reg.retiring_count(), retiring.len());
            }
        }
    }

    /// Puts `n` callers asking for `flavor` in the waiting line, as the manager does.
    fn wait_in_line(reg: &mut Registry, l: &Limits, flavor: SandboxFlavor, n: usize) {
        for i in 0..n {
            let id = format!("w{i}-{flavor}");
            assert!(matches!(
                decide(reg, &ask(&id, flavor), &Progress::default(), l),
                Decision::Wait
            ));
            reg.waiting += 1;
        }
    }

    /// A memory limit of one large sandbox's memory, held by one large sandbox.
    fn full_of_one_large_sandbox() -> (Registry, Limits) {
        let large = u64::from(SandboxFlavor::Large.memory_mb());
        let mut reg = Registry::default();
        let l = limits(100, Some(large), LimitPolicy::Wait);
        assert!(matches!(
            decide(&mut reg, &ask("big", SandboxFlavor::Large), &Progress::default(), &l),
            Decision::Create
        ));
        (reg, l)
    }

    #[test]
    fn a_freed_slot_wakes_one_waiter_without_a_memory_limit() {
        let mut reg = Registry::default();
        let l = limits(1, None, LimitPolicy::Wait);
        assert!(matches!(
            decide(&mut reg, &ask("a", SandboxFlavor::Small), &Progress::default(), &l),
            Decision::Create
        ));
        wait_in_line(&mut reg, &l, SandboxFlavor::Small, 1000);
        reg.ledger_mut().release(SandboxFlavor::Small);
        assert_eq!(wakeups(&reg, &l), Wake::Some(1));
    }

    #[test]
    fn with_a_memory_limit_alike_waiters_are_woken_as_many_as_fit() {
        let small = u64::from(SandboxFlavor::Small.memory_mb());
        let large = u64::from(SandboxFlavor::Large.memory_mb());
        let (mut reg, l) = full_of_one_large_sandbox();
        wait_in_line(&mut reg, &l, SandboxFlavor::Small, 1000);
        // Nothing freed yet: one waiter is woken at most (it finds no room and waits again).
        assert_eq!(wakeups(&reg, &l), Wake::Some(1));
        // The large sandbox's memory fits this many small ones: that many are woken, not 1,000.
        reg.ledger_mut().release(SandboxFlavor::Large);
        assert_eq!(wakeups(&reg, &l), Wake::Some((large / small) as usize));
    }

    #[test]
    fn with_a_memory_limit_waiters_of_different_sizes_are_all_woken() {
        let (mut reg, l) = full_of_one_large_sandbox();
        wait_in_line(&mut reg, &l, SandboxFlavor::Large, 2);
        wait_in_line(&mut reg, &l, SandboxFlavor::Small, 2);
        reg.ledger_mut().release(SandboxFlavor::Large);
        assert_eq!(wakeups(&reg, &l), Wake::All);
    }

    #[test]
    fn the_range_of_waiting_sizes_restarts_when_the_line_empties() {
        let (mut reg, l) = full_of_one_large_sandbox();
        wait_in_line(&mut reg, &l, SandboxFlavor::Large, 1);
        reg.waiting = 0;
        wait_in_line(&mut reg, &l, SandboxFlavor::Small, 3);
        assert_eq!(wakeups(&reg, &l), Wake::Some(1));
    }
}
