//! This process's descendants, from /proc: the servers it started (SKM's
//! tiers, etcd members, peers) and theirs, for pinning them to cores and
//! for finding the processes whose CPU time a row reports.

use std::collections::HashMap;

/// The parent of every process in /proc.
fn parents() -> HashMap<u32, u32> {
    let mut parent = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return parent };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if let Some(ppid) = std::fs::read_to_string(entry.path().join("stat")).ok().as_deref().and_then(stat_ppid) {
            parent.insert(pid, ppid);
        }
    }
    parent
}

/// Field 4 of a /proc/<pid>/stat line (counted from the last ')', since
/// the command name may hold anything).
fn stat_ppid(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// Every process that descends from `root`, parents before children.
fn descendants_of(root: u32, parent: &HashMap<u32, u32>) -> Vec<u32> {
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let of = found[i];
        let mut children: Vec<u32> = parent.iter().filter(|&(_, &p)| p == of).map(|(&c, _)| c).collect();
        children.sort_unstable();
        found.extend(children);
        i += 1;
    }
    found.remove(0);
    found
}

/// Every process that descends from this one.
pub(crate) fn descendants() -> Vec<u32> {
    descendants_of(std::process::id(), &parents())
}

/// This process's descendants whose command name (/proc/<pid>/comm) is `name`.
pub(crate) fn descendants_named(name: &str) -> Vec<u32> {
    descendants()
        .into_iter()
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_follow_parent_links() {
        assert_eq!(stat_ppid("77 (a) b) S 12 77 77"), Some(12));
        let parent: HashMap<u32, u32> = [(10, 1), (11, 10), (12, 11), (13, 1), (14, 10)].into_iter().collect();
        assert_eq!(descendants_of(10, &parent), [11, 14, 12]);
        assert!(descendants_of(13, &parent).is_empty());
    }

    #[test]
    fn a_child_is_found_by_name() -> std::io::Result<()> {
        let mut child = std::process::Command::new("sleep").arg("5").spawn()?;
        let found = descendants_named("sleep");
        child.kill()?;
        child.wait()?;
        assert!(found.contains(&child.id()), "{found:?} lacks {}", child.id());
        Ok(())
    }
}
