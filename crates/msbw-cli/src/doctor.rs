//! `msbw doctor`: which backend, why, whether it answers, and what this host offers the local
//! backend.

use microsandbox_wrapper::{LocalBackend, LocalConfig, WrapperConfig, build_backend, choose_backend};

use crate::exit;
use crate::out::outln;

/// Prints the diagnosis; exit status 0 when the chosen backend is healthy, 1 otherwise.
pub(crate) async fn run(config: WrapperConfig, json: bool) -> u8 {
    let selection = choose_backend(&config).await;
    let health = match build_backend(&config, &selection) {
        Ok(backend) => match backend.health().await {
            Ok(h) => Ok(h.message),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let host = LocalBackend::probe(&LocalConfig::from_config(&config).unwrap_or_default());
    if json {
        let value = serde_json::json!({
            "backend": selection,
            "healthy": health.is_ok(),
            "health": match &health { Ok(m) | Err(m) => m },
            "local_backend": {
                "usable": host.usable(),
                "namespaces": match &host.namespaces { Ok(()) => "available".to_owned(), Err(why) => why.clone() },
                "root": host.root,
                "landlock_abi": host.landlock_abi,
                "seccomp": match &host.seccomp {
                    Ok(s) => serde_json::json!({"active": true, "arch": s.arch, "allowed": s.allowed, "denied": s.denied}),
                    Err(why) => serde_json::json!({"active": false, "reason": why}),
                },
                "cgroup_version": host.cgroup_version,
                "cgroup_controllers": host.cgroup_controllers,
                "process_limit": format!("{:?}", host.process_limit),
                "python": host.python.as_ref().map(|p| p.display().to_string()),
                "node": host.node.as_ref().map(|p| p.display().to_string()),
                "notes": host.notes,
            },
        });
        outln!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        outln!("Backend");
        outln!(
            "  selected:  {} (MSB_BACKEND={})",
            selection.backend,
            selection.requested
        );
        outln!("  why:       {}", selection.reason);
        match &health {
            Ok(m) => outln!("  health:    ok: {m}"),
            Err(m) => outln!("  health:    FAILED: {m}"),
        }
        outln!();
        outln!(
            "Local backend on this host ({})",
            if host.usable() { "usable" } else { "NOT usable" }
        );
        for line in host.to_string().lines() {
            outln!("  {line}");
        }
    }
    if health.is_ok() { exit::OK } else { exit::FAILED }
}
