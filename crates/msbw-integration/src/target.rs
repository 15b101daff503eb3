//! What the suites run against: the server's URL and key, how it authenticates, which images
//! its sandboxes use, and what the harness offers besides (a libkrun stand-in, a control
//! socket, an `msbw` binary).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use msbw_backend::{SandboxId, SandboxSpec, Template};
use msbw_config::redact_url;
use msbw_http::{HttpBackend, HttpBackendConfig};

use crate::control::Control;

/// How the server authenticates, as far as the suites know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A local `msbserver --dev`: no authentication.
    Dev,
    /// A local `msbserver --key K`: every call needs a key.
    Keyed,
    /// A server the user pointed at (`MSB_SERVER_URL`); it wants a key if `MSB_API_KEY` is set.
    External,
}

/// The mode's name on the command line.
impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Dev => "dev",
            Mode::Keyed => "keyed",
            Mode::External => "external",
        })
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dev" => Ok(Mode::Dev),
            "keyed" => Ok(Mode::Keyed),
            "external" => Ok(Mode::External),
            other => Err(format!("unknown mode {other:?}; the modes are dev, keyed, external")),
        }
    }
}

/// Which program answers at the target's URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// The microsandbox server (`msbserver`, local or the user's), with its real agent and the
    /// agent's documented defects.
    Microsandbox,
    /// `msbw serve` over the local backend, started by the suites themselves.
    MsbwServe,
}

/// Everything the suites know about what they run against.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's base URL; `None` when only suites that start their own server run.
    pub url: Option<String>,
    /// The API key (a key for every namespace).
    pub api_key: Option<String>,
    /// How the server authenticates.
    pub mode: Mode,
    /// Which program answers.
    pub kind: ServerKind,
    /// Whether the server runs on the TEST-ONLY libkrun stand-in (so that its
    /// `MSBW_STANDIN_*` variables work, e.g. delaying the agent).
    pub standin: bool,
    /// The image of python sandboxes (`None`: the backend's default, `microsandbox/python`).
    pub python_image: Option<String>,
    /// The image of node sandboxes.
    pub node_image: Option<String>,
    /// The harness's control socket, if the harness owns the server.
    pub control: Option<Control>,
    /// The `msbw` program, for the suites of `msbw serve`.
    pub msbw_bin: Option<PathBuf>,
    /// Why there is no `msbw` program, if the harness knows (e.g. its crate does not build).
    pub msbw_unavailable: Option<String>,
    /// The namespace the sandboxes are started in.
    pub namespace: String,
    /// A short tag unique to this run, in every sandbox name, so that runs never collide and
    /// leftovers can be recognised.
    pub run_tag: String,
    /// The build cache of the integration layer (`~/.cache/msbw-integration`): the Python SDK's
    /// virtual environment goes there.
    pub cache: Option<PathBuf>,
    /// A folder for the suites' own files (logs of the `msbw serve` processes they start).
    pub work_dir: PathBuf,
}

/// A short tag unique to this process and moment: base 36 of the PID and the clock.
pub fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut n = (nanos ^ (u128::from(std::process::id()) << 40)) % 36u128.pow(7);
    let mut tag = String::new();
    for _ in 0..7 {
        let digit = u32::try_from(n % 36).unwrap_or(0);
        tag.push(char::from_digit(digit, 36).unwrap_or('0'));
        n /= 36;
    }
    tag
}

impl Target {
    /// A target with nothing but a URL and a mode.
    pub fn new(url: Option<String>, mode: Mode) -> Self {
        let tag = run_tag();
        Target {
            url,
            api_key: None,
            mode,
            kind: ServerKind::Microsandbox,
            standin: false,
            python_image: None,
            node_image: None,
            control: None,
            msbw_bin: None,
            msbw_unavailable: None,
            namespace: "default".into(),
            run_tag: tag.clone(),
            cache: None,
            work_dir: std::env::temp_dir().join(format!("msbw-integration-suites-{tag}")),
        }
    }

    /// The same target with another server at `url` (keeping the run tag, the cache and the work
    /// folder): used for the `msbw serve` processes the suites start.
    pub fn serve_at(&self, url: String, mode: Mode, api_key: Option<String>) -> Target {
        Target {
            url: Some(url),
            api_key,
            mode,
            kind: ServerKind::MsbwServe,
            standin: false,
            python_image: None,
            node_image: None,
            control: None,
            msbw_bin: self.msbw_bin.clone(),
            msbw_unavailable: self.msbw_unavailable.clone(),
            namespace: self.namespace.clone(),
            run_tag: self.run_tag.clone(),
            cache: self.cache.clone(),
            work_dir: self.work_dir.clone(),
        }
    }

    /// Whether the real microsandbox agent (`portal` 0.2.6) runs the sandboxes, with its known
    /// defects (see `suites::conformance::KNOWN_DEFECTS`).
    pub fn runs_the_real_agent(&self) -> bool {
        self.kind == ServerKind::Microsandbox
    }

    /// What the target is, for reports: `real msbserver 0.2.6 at URL (dev mode, libkrun
    /// stand-in)`.
    pub fn describe(&self) -> String {
        let Some(url) = &self.url else {
            return "no server (the suite starts its own)".into();
        };
        let url = redact_url(url);
        let key = if self.api_key.is_some() {
            ", with a key"
        } else {
            ", no key"
        };
        match (self.kind, self.mode) {
            (ServerKind::MsbwServe, mode) => format!("msbw serve (local backend) at {url} ({mode} mode{key})"),
            (_, Mode::External) => format!("external server {url}{key}"),
            (_, mode) => format!(
                "real msbserver 0.2.6 at {url} ({mode} mode{key}{})",
                if self.standin { ", libkrun stand-in" } else { "" }
            ),
        }
    }

    /// The HTTP backend's settings for this target with `key` instead of the target's key:
    /// the production defaults, this target's images.
    pub fn config_with_key(&self, key: Option<&str>) -> Result<HttpBackendConfig, String> {
        let url = self
            .url
            .as_deref()
            .ok_or_else(|| "no server URL: pass --url or set MSB_SERVER_URL".to_owned())?;
        let mut config = HttpBackendConfig::new(url);
        if let Some(key) = key {
            config = config.with_api_key(key.to_owned());
        }
        if let Some(image) = &self.python_image {
            config.python_image = image.clone();
        }
        if let Some(image) = &self.node_image {
            config.node_image = image.clone();
        }
        Ok(config)
    }

    /// An HTTP backend for this target with `key` instead of the target's key.
    pub fn backend_with_key(&self, key: Option<&str>) -> Result<HttpBackend, String> {
        HttpBackend::new(self.config_with_key(key)?).map_err(|e| format!("cannot create the HTTP backend: {e}"))
    }

    /// An HTTP backend for this target, with its key.
    pub fn backend(&self) -> Result<HttpBackend, String> {
        self.backend_with_key(self.api_key.as_deref())
    }

    /// The start of the names of the sandboxes of `suite` in this run.
    pub fn prefix(&self, suite: &str) -> String {
        format!("it{}-{suite}", self.run_tag)
    }

    /// A sandbox id `PREFIX-NAME` for `suite` in the target's namespace.
    pub fn id(&self, suite: &str, name: &str) -> Result<SandboxId, String> {
        SandboxId::new(self.namespace.clone(), format!("{}-{name}", self.prefix(suite)))
            .map_err(|e| format!("invalid sandbox id: {e}"))
    }

    /// A spec for a small sandbox: 512 MiB, a 120 s start budget.
    pub fn spec(&self, id: SandboxId, template: Template) -> SandboxSpec {
        let mut spec = SandboxSpec::new(id, template);
        spec.memory_mb = 512;
        spec.start_timeout = Duration::from_secs(120);
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_tags_are_short_names() {
        let tag = run_tag();
        assert_eq!(tag.len(), 7);
        assert!(tag.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn descriptions_name_the_server_and_hide_credentials() {
        let mut t = Target::new(Some("http://u:p@127.0.0.1:5/".into()), Mode::Dev);
        t.standin = true;
        assert_eq!(
            t.describe(),
            "real msbserver 0.2.6 at http://***@127.0.0.1:5/ (dev mode, no key, libkrun stand-in)"
        );
        assert_eq!(
            Target::new(None, Mode::External).describe(),
            "no server (the suite starts its own)"
        );
    }

    #[test]
    fn ids_fit_the_servers_naming_rule() {
        let t = Target::new(Some("http://127.0.0.1:5".into()), Mode::Dev);
        let id = t.id("defences", "concurrent-5").unwrap();
        assert!(id.name.starts_with("it") && id.name.len() <= 63, "{id}");
        assert!(t.config_with_key(None).is_ok());
        assert!(Target::new(None, Mode::Dev).config_with_key(None).is_err());
    }
}
