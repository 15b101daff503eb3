//! The build cache, outside the working tree: the TEST-ONLY libkrun stand-in and the real
//! microsandbox server and agent, installed from crates.io, one folder per version.
//!
//! ```text
//! CACHE/krun-standin/lib/libkrun.so             the stand-in (msbrun's RPATH points here)
//! CACHE/krun-standin/lib/libmsbw_loopback.so    LD_PRELOAD shim: the agent binds 127.0.0.1
//! CACHE/krun-standin/lib/.source-hash           what the two were built from
//! CACHE/microsandbox-portal-0.2.6/bin/portal    the agent (features python, nodejs)
//! CACHE/microsandbox-cli-0.2.6/bin/{msbserver,msb,msbrun}
//! ```
//!
//! `CACHE` is `$MSBW_INTEGRATION_CACHE`, else `~/.cache/msbw-integration`. Each step is skipped
//! when its output is there; the crates are installed into a staging folder that is renamed
//! into place at the end, so an interrupted build never leaves a half-installed version behind.
//! msbrun records the absolute library folder at link time: moving `CACHE` needs a rebuild
//! (`--rebuild`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The microsandbox version the suites are written for.
pub(crate) const MSB_VERSION: &str = "0.2.6";

/// The environment variable that moves the cache.
pub(crate) const CACHE_VAR: &str = "MSBW_INTEGRATION_CACHE";

/// Where everything is, once built (in the order it is built).
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// The stand-in's folder (only for checking that msbrun loads it).
    libdir: PathBuf,
    pub(crate) portal: PathBuf,
    pub(crate) msbserver: PathBuf,
    pub(crate) msb: PathBuf,
    pub(crate) msbrun: PathBuf,
}

/// How long one build step took, and whether it did anything.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) what: String,
    pub(crate) took: Duration,
    pub(crate) built: bool,
}

/// The cache folder.
pub(crate) fn root() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(CACHE_VAR).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            return Err(format!("{CACHE_VAR} must be an absolute path, not {}", dir.display()));
        }
        return Ok(dir);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("msbw-integration")),
        None => Err(format!(
            "HOME is not set: set {CACHE_VAR} to a folder for the build cache"
        )),
    }
}

/// Whether the server's binaries are in the cache (so that building them needs nothing).
pub(crate) fn server_installed(cache: &Path) -> bool {
    let bin = cache.join(format!("microsandbox-cli-{MSB_VERSION}")).join("bin");
    ["msbserver", "msb", "msbrun"].iter().all(|b| bin.join(b).is_file())
}

/// FNV-1a, 64 bits: a stable fingerprint of the stand-in's inputs (std's hasher may change
/// between Rust releases).
fn fnv1a(parts: &[&[u8]]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Makes sure the stand-in, the agent and the server are in the cache; builds what is missing
/// (everything with `force`).
pub(crate) fn ensure(
    cache: &Path,
    standin_src: &Path,
    cargo: &Path,
    force: bool,
) -> Result<(Binaries, Vec<Step>), String> {
    let libdir = cache.join("krun-standin").join("lib");
    let portal_root = cache.join(format!("microsandbox-portal-{MSB_VERSION}"));
    let cli_root = cache.join(format!("microsandbox-cli-{MSB_VERSION}"));
    let bins = Binaries {
        libdir: libdir.clone(),
        portal: portal_root.join("bin/portal"),
        msbserver: cli_root.join("bin/msbserver"),
        msb: cli_root.join("bin/msb"),
        msbrun: cli_root.join("bin/msbrun"),
    };
    std::fs::create_dir_all(&libdir).map_err(|e| format!("cannot create {}: {e}", libdir.display()))?;
    let mut steps = Vec::new();

    steps.push(standin(standin_src, &libdir, &bins.portal, force)?);
    steps.push(install(
        cargo,
        cache,
        &portal_root,
        &[&bins.portal],
        &["microsandbox-portal", "--features", "python,nodejs"],
        None,
        force,
    )?);
    let rustflags = format!("-L native={dir} -C link-arg=-Wl,-rpath,{dir}", dir = libdir.display());
    steps.push(install(
        cargo,
        cache,
        &cli_root,
        &[&bins.msbserver, &bins.msb, &bins.msbrun],
        &["microsandbox-cli"],
        Some(&rustflags),
        force,
    )?);
    check_links_standin(&bins)?;
    Ok((bins, steps))
}

/// Builds `libkrun.so` and `libmsbw_loopback.so` with `cc` (or `$CC`) unless both exist and
/// were built from the same source, flags and agent path.
fn standin(src: &Path, libdir: &Path, portal: &Path, force: bool) -> Result<Step, String> {
    let started = Instant::now();
    let what = format!("libkrun stand-in (TEST ONLY, no isolation) -> {}", libdir.display());
    let source = std::fs::read(src).map_err(|e| format!("cannot read the stand-in source {}: {e}", src.display()))?;
    let portal_text = portal.to_str().filter(|p| !p.contains(['"', '\\']));
    let Some(portal_text) = portal_text else {
        return Err(format!(
            "the cache path {} cannot be compiled into the stand-in (it must be UTF-8 without quotes or \
             backslashes): set {CACHE_VAR} to another folder",
            portal.display()
        ));
    };
    let cc = std::env::var("CC")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "cc".into());
    let common = ["-O2", "-g", "-Wall", "-Wextra", "-shared", "-fPIC"];
    let define = format!("-DMSBW_DEFAULT_PORTAL=\"{portal_text}\"");
    let hash = fnv1a(&[&source, common.join(" ").as_bytes(), define.as_bytes(), cc.as_bytes()]);
    let stamp = libdir.join(".source-hash");
    let krun = libdir.join("libkrun.so");
    let shim = libdir.join("libmsbw_loopback.so");
    let current = std::fs::read_to_string(&stamp).unwrap_or_default();
    if !force && krun.is_file() && shim.is_file() && current.trim() == hash {
        return Ok(Step {
            what,
            took: started.elapsed(),
            built: false,
        });
    }
    eprintln!("xtask: building {what}");
    if let Some(parent) = libdir.parent() {
        remove_stale(parent, "lib.tmp-");
    }
    let tmp = libdir.with_file_name(format!("lib.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let compile = |out: &Path, extra: &[&str]| -> Result<(), String> {
        let status = Command::new(&cc)
            .args(common)
            .args(extra)
            .arg("-o")
            .arg(out)
            .arg(src)
            .arg("-ldl")
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run the C compiler {cc:?}: {e}"))?;
        if !status.success() {
            return Err(format!("{cc} failed to compile {} ({status})", src.display()));
        }
        Ok(())
    };
    let result = compile(&tmp.join("libkrun.so"), &[&define])
        .and_then(|()| compile(&tmp.join("libmsbw_loopback.so"), &["-DMSBW_LOOPBACK_SHIM"]))
        .and_then(|()| {
            // rename(2): a running msbrun keeps the copy it has mapped.
            for name in ["libkrun.so", "libmsbw_loopback.so"] {
                std::fs::rename(tmp.join(name), libdir.join(name))
                    .map_err(|e| format!("cannot move {name} into {}: {e}", libdir.display()))?;
            }
            std::fs::write(&stamp, format!("{hash}\n")).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
        });
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    Ok(Step {
        what,
        took: started.elapsed(),
        built: true,
    })
}

/// `cargo install --locked CRATE --version MSB_VERSION` into `root`, unless every one of
/// `outputs` is already there. Installs into a staging folder first, then renames it.
fn install(
    cargo: &Path,
    cache: &Path,
    root: &Path,
    outputs: &[&PathBuf],
    crate_and_args: &[&str],
    rustflags: Option<&str>,
    force: bool,
) -> Result<Step, String> {
    let started = Instant::now();
    let name = crate_and_args.first().copied().unwrap_or("?");
    let what = format!("{name} {MSB_VERSION} -> {}", root.display());
    if !force && outputs.iter().all(|o| o.is_file()) {
        return Ok(Step {
            what,
            took: started.elapsed(),
            built: false,
        });
    }
    let base = root.file_name().and_then(|n| n.to_str()).unwrap_or("install");
    remove_stale(cache, &format!("{base}.staging-"));
    remove_stale(cache, &format!("{base}.target-"));
    let staging = root.with_file_name(format!("{base}.staging-{}", std::process::id()));
    // Our own build folder, so that a failed build's leftovers (about 1 GB) are removed too.
    let target = root.with_file_name(format!("{base}.target-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    eprintln!("xtask: cargo install {name} {MSB_VERSION} (a few minutes the first time; cached afterwards)");
    let mut command = Command::new(cargo);
    command
        .arg("install")
        .args(crate_and_args)
        .args(["--version", MSB_VERSION, "--locked", "--force", "--root"])
        .arg(&staging)
        .arg("--target-dir")
        .arg(&target)
        // Outside the workspace, so its .cargo/config.toml does not apply.
        .current_dir(cache)
        .stdin(Stdio::null())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if let Some(flags) = rustflags {
        let user = std::env::var("RUSTFLAGS").unwrap_or_default();
        command.env("RUSTFLAGS", format!("{user} {flags}").trim());
    }
    let status = command.status();
    let _ = std::fs::remove_dir_all(&target);
    let status = status.map_err(|e| format!("cannot run {}: {e}", cargo.display()))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(format!(
            "cargo install {name} {MSB_VERSION} failed ({status}); its output is above. It needs crates.io \
             a C toolchain (cc), pkg-config and libssl-dev"
        ));
    }
    let _ = std::fs::remove_dir_all(root);
    if let Err(e) = std::fs::rename(&staging, root) {
        let _ = std::fs::remove_dir_all(&staging);
        // Another run may have installed the same version meanwhile.
        if !outputs.iter().all(|o| o.is_file()) {
            return Err(format!("cannot move {} into place: {e}", staging.display()));
        }
    }
    if let Some(missing) = outputs.iter().find(|o| !o.is_file()) {
        return Err(format!(
            "cargo install {name} {MSB_VERSION} succeeded but {} is missing",
            missing.display()
        ));
    }
    Ok(Step {
        what,
        took: started.elapsed(),
        built: true,
    })
}

/// Removes the folders `PREFIX<pid>` in `dir` left behind by interrupted builds, whose
/// process is gone.
fn remove_stale(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// msbrun must load the stand-in, not some other libkrun.
fn check_links_standin(bins: &Binaries) -> Result<(), String> {
    let out = Command::new("ldd")
        .arg(&bins.msbrun)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ldd to check {}: {e}", bins.msbrun.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = bins.libdir.join("libkrun.so");
    if text.contains(&*expected.to_string_lossy()) {
        return Ok(());
    }
    let krun: Vec<&str> = text.lines().filter(|l| l.contains("krun")).map(str::trim).collect();
    Err(format!(
        "{} does not load the stand-in {} (ldd says: {}); the cache was moved or built elsewhere: run \
         `cargo xtask test-integration --rebuild`",
        bins.msbrun.display(),
        expected.display(),
        if krun.is_empty() {
            "no libkrun".to_owned()
        } else {
            krun.join("; ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_build_folders_of_dead_processes_are_removed() {
        let dir = std::env::temp_dir().join(format!("xtask-cache-test-{}", std::process::id()));
        let dead = dir.join("x.staging-4294967");
        let alive = dir.join(format!("x.staging-{}", std::process::id()));
        let other = dir.join("x.staging-notapid");
        for d in [&dead, &alive, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        remove_stale(&dir, "x.staging-");
        assert!(!dead.exists() && alive.exists() && other.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_fingerprint_is_stable_and_separates_parts() {
        assert_eq!(fnv1a(&[b"abc"]), fnv1a(&[b"abc"]));
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_eq!(fnv1a(&[]), "cbf29ce484222325");
    }
}
