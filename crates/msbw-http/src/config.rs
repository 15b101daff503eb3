//! The settings of one [`HttpBackend`](crate::HttpBackend): where the server is, how to
//! authenticate, which images to start, and how long and how often to wait.

use std::fmt;
use std::time::Duration;

use msbw_backend::Template;
use msbw_config::{
    ApiKey, BackendConfig, BackendSettings, ConfigError, ConfigKey, ConfigProblem, WrapperConfig, redact_url,
};

use crate::RetryPolicy;

/// How an [`HttpBackend`](crate::HttpBackend) talks to a microsandbox server.
///
/// `Debug` redacts credentials in the URL and never shows the API key.
#[derive(Clone)]
pub struct HttpBackendConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:5555`; `/api/v1/...` is appended.
    pub server_url: String,
    /// The API key, sent as `Authorization: Bearer <key>` on every RPC call.
    pub api_key: Option<ApiKey>,
    /// The image of `python` sandboxes: an OCI reference or a host directory (`/...`, `./...`).
    pub python_image: String,
    /// The image of `node` sandboxes.
    pub node_image: String,
    /// The shell sent with a host-directory image, which has no command of its own (the server
    /// 0.2.6 cannot start one without it). OCI images run their own command and get none.
    pub directory_image_shell: String,
    /// The longest a start may take, waiting for the agent included; a spec's own
    /// `start_timeout` applies when it is shorter.
    pub start_timeout: Duration,
    /// Added to an execution's timeout to get the client-side limit, so that the server can
    /// report the timeout itself before the client gives up.
    pub exec_grace: Duration,
    /// The limit of short calls: health, listing, stop.
    pub request_timeout: Duration,
    /// The limit of establishing a connection.
    pub connect_timeout: Duration,
    /// Retries of calls that are safe to repeat.
    pub retry: RetryPolicy,
    /// How long after a start a masked failure of a forwarded call is taken for an agent that
    /// is not up yet, and the call retried (defence 1).
    pub readiness_window: Duration,
    /// The first pause between two polls (readiness, start confirmation, stop); it doubles up
    /// to `max_poll_interval`.
    pub poll_interval: Duration,
    /// The longest pause between two polls.
    pub max_poll_interval: Duration,
    /// How long `stop` waits for the server to list the sandbox as not running.
    pub stop_wait: Duration,
    /// The largest answer accepted, in bytes (outputs are kept in memory).
    pub max_response_bytes: usize,
    /// The most a Python cell's end-of-output statement waits for the agent to read the cell's
    /// stderr (see the crate's `end_marker` module): every cell gets a statement that flushes
    /// both streams, writes a random marker on each and, between the two, waits until the
    /// agent has read the stderr pipe empty, so that the agent 0.2.6 (which drops stderr lines
    /// it has not read when its stdout end marker arrives: 35-40 of 100 tracebacks without
    /// help) has every stderr line before the execution ends. The wait returns as soon as the
    /// pipe is empty (microseconds); the bound only matters if the agent stops reading. Zero
    /// sends the code unchanged.
    pub python_stderr_settle: Duration,
    /// Connect to the server through this Unix socket instead of TCP (the URL's host is then
    /// only the `Host` header). `msbw serve --unix` listens on one; the CLI's per-user session
    /// server does.
    pub unix_socket: Option<std::path::PathBuf>,
}

impl HttpBackendConfig {
    /// The defaults, for a server at `server_url`: images `microsandbox/python` and
    /// `microsandbox/node`, start timeout 180 s, grace 10 s, short calls 30 s, connect 10 s.
    pub fn new(server_url: impl Into<String>) -> Self {
        HttpBackendConfig {
            server_url: server_url.into(),
            api_key: None,
            python_image: ConfigKey::PythonImage.default_value().into(),
            node_image: ConfigKey::NodeImage.default_value().into(),
            directory_image_shell: "/bin/sh".into(),
            start_timeout: Duration::from_secs(180),
            exec_grace: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            readiness_window: Duration::from_secs(3),
            poll_interval: Duration::from_millis(50),
            max_poll_interval: Duration::from_secs(1),
            stop_wait: Duration::from_secs(10),
            max_response_bytes: 64 * 1024 * 1024,
            python_stderr_settle: Duration::from_millis(500),
            unix_socket: None,
        }
    }

    /// The settings only this backend reads, which it parses and validates itself.
    pub const SETTINGS: [ConfigKey; 2] = [ConfigKey::PythonImage, ConfigKey::NodeImage];

    /// Sets the API key.
    pub fn with_api_key(mut self, key: impl Into<ApiKey>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The configured image of a template.
    pub fn image(&self, template: Template) -> &str {
        match template {
            Template::Python => &self.python_image,
            Template::Node => &self.node_image,
        }
    }
}

/// The rule for an image (configured, or a spec's own): what is wrong with it, if anything.
pub(crate) fn image_problem(image: &str) -> Option<&'static str> {
    (image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()))
        .then_some("is empty or contains white space")
}

impl fmt::Debug for HttpBackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBackendConfig")
            .field("server_url", &redact_url(&self.server_url))
            .field("api_key", &self.api_key.as_ref().map(|_| msbw_config::MASK))
            .field("python_image", &self.python_image)
            .field("node_image", &self.node_image)
            .field("directory_image_shell", &self.directory_image_shell)
            .field("start_timeout", &self.start_timeout)
            .field("exec_grace", &self.exec_grace)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("readiness_window", &self.readiness_window)
            .field("poll_interval", &self.poll_interval)
            .field("max_poll_interval", &self.max_poll_interval)
            .field("stop_wait", &self.stop_wait)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("python_stderr_settle", &self.python_stderr_settle)
            .field("unix_socket", &self.unix_socket)
            .finish()
    }
}

impl BackendConfig for HttpBackendConfig {
    /// Every problem with this backend's own settings (empty when they are valid).
    fn settings_problems(settings: &BackendSettings) -> Vec<ConfigProblem> {
        Self::SETTINGS
            .into_iter()
            .filter_map(|key| {
                let image = settings.text(key);
                image_problem(image).map(|why| ConfigProblem::new(key, image, why))
            })
            .collect()
    }

    /// The defaults with the wrapper configuration's server URL, API key and start timeout, and
    /// this backend's own settings (`MSB_PYTHON_IMAGE`, `MSB_NODE_IMAGE`) from its
    /// [`backend_settings`](WrapperConfig::backend_settings), validated.
    fn from_wrapper(config: &WrapperConfig) -> Result<Self, ConfigError> {
        let settings = &config.backend_settings;
        ConfigError::check(Self::settings_problems(settings))?;
        Ok(HttpBackendConfig {
            api_key: config.api_key.clone(),
            python_image: settings.text(ConfigKey::PythonImage).to_owned(),
            node_image: settings.text(ConfigKey::NodeImage).to_owned(),
            start_timeout: config.sandbox_start_timeout,
            ..HttpBackendConfig::new(config.server_url.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_configuration_is_mapped() {
        let wrapper = WrapperConfig::builder()
            .server_url("http://example.test:9999")
            .api_key("msb_secret")
            .sandbox_start_timeout(Duration::from_secs(42))
            .set(ConfigKey::PythonImage, "my/python")
            .set(ConfigKey::NodeImage, "/srv/node-root")
            .build()
            .unwrap();
        let config = HttpBackendConfig::from_wrapper(&wrapper).unwrap();
        assert_eq!(config.server_url, "http://example.test:9999");
        assert_eq!(config.api_key.as_ref().map(ApiKey::expose), Some("msb_secret"));
        assert_eq!(config.start_timeout, Duration::from_secs(42));
        assert_eq!(config.image(Template::Python), "my/python");
        assert_eq!(config.image(Template::Node), "/srv/node-root");
    }

    #[test]
    fn its_own_settings_are_validated_here_with_the_variable_the_value_and_the_rule() {
        let config = HttpBackendConfig::from_vars([("MSB_NODE_IMAGE", "/srv/node-root")]).unwrap();
        assert_eq!(config.image(Template::Node), "/srv/node-root");
        assert_eq!(config.image(Template::Python), "microsandbox/python");

        let err = HttpBackendConfig::from_vars([
            ("MSB_PYTHON_IMAGE", "my python"),
            ("MSB_MAX_SESSIONS", "0"),
            ("MSB_NODE_IMAGE", "a\tb"),
        ])
        .unwrap_err();
        let problems: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("MSB_MAX_SESSIONS"), "{problems:?}");
        assert_eq!(
            problems[1],
            "MSB_PYTHON_IMAGE (python_image) = \"my python\": is empty or contains white space; \
             allowed: an OCI image reference, or a host directory path starting with '/' or '.'"
        );
        assert!(problems[2].starts_with("MSB_NODE_IMAGE"), "{problems:?}");

        let mut wrapper = WrapperConfig::default();
        wrapper.backend_settings.set(ConfigKey::PythonImage, "bad image");
        assert!(HttpBackendConfig::from_wrapper(&wrapper).is_err());
    }

    #[test]
    fn debug_hides_the_key_and_url_credentials() {
        let config = HttpBackendConfig::new("http://user:pw@host:1").with_api_key("msb_topsecret");
        let debug = format!("{config:?}");
        assert!(!debug.contains("topsecret") && !debug.contains("pw@"), "{debug}");
        assert!(debug.contains("***@host:1"), "{debug}");
    }
}
