//! The sandboxes clients have started, as (namespace, name), which `sandbox.metrics.get` keeps
//! listing after they stop, as the real server does. Bounded: the oldest are forgotten first.

use std::collections::{HashSet, VecDeque};

/// A namespace and a sandbox name.
pub(crate) type Name = (String, String);

/// A bounded, insertion-ordered set of sandbox names.
#[derive(Debug)]
pub(crate) struct Known {
    order: VecDeque<Name>,
    set: HashSet<Name>,
    cap: usize,
}

impl Known {
    /// An empty set holding at most `cap` names.
    pub(crate) fn new(cap: usize) -> Known {
        Known {
            order: VecDeque::new(),
            set: HashSet::new(),
            cap: cap.max(1),
        }
    }

    /// Remembers a name, forgetting the oldest one when full.
    pub(crate) fn insert(&mut self, name: Name) {
        if self.set.contains(&name) {
            return;
        }
        if self.order.len() >= self.cap
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.set.insert(name.clone());
        self.order.push_back(name);
    }

    /// Whether a name is remembered.
    pub(crate) fn contains(&self, name: &Name) -> bool {
        self.set.contains(name)
    }

    /// The names, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Name> {
        self.order.iter()
    }

    /// How many names are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: usize) -> Name {
        ("ns".into(), format!("s{i}"))
    }

    #[test]
    fn the_registry_never_grows_past_its_bound() {
        let mut known = Known::new(3);
        for i in 0..10 {
            known.insert(name(i));
            known.insert(name(i));
        }
        assert_eq!(known.len(), 3);
        assert!(!known.contains(&name(6)));
        assert_eq!(
            known.iter().cloned().collect::<Vec<_>>(),
            vec![name(7), name(8), name(9)]
        );
    }
}
