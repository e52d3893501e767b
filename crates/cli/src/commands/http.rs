//! A small blocking HTTP client for commands that talk to a running server.

use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::Value;

use super::output::Output;

/// Where the running server is, for commands that call its API.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Configuration of the server (its listen address and first API token).
    #[arg(
        short,
        long,
        default_value = "fleetbus.yaml",
        env = "FLEETBUS_CONFIG",
        global = true
    )]
    pub config: PathBuf,
    /// Server URL (default: http://<server.listen> of the config).
    #[arg(long, env = "FLEETBUS_URL", global = true)]
    pub url: Option<String>,
    /// Management API token (default: the config's first `server.api_tokens`).
    /// With `--url` too, no configuration file is read.
    #[arg(long, env = "FLEETBUS_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, value_enum, default_value_t, global = true)]
    pub output: Output,
}

/// The server's base URL and the API token to call it with.
pub struct Api {
    base: String,
    token: String,
}

impl Api {
    /// A server at `base`, called with `token`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Api {
        Api {
            base: base.into(),
            token: token.into(),
        }
    }

    pub fn from_args(args: &ServerArgs) -> anyhow::Result<Api> {
        // A remote server: its URL and a token are all that is needed.
        if let (Some(base), Some(token)) = (&args.url, &args.token) {
            return Ok(Api {
                base: base.clone(),
                token: token.clone(),
            });
        }
        let config = fleetbus_config::load(&args.config).map_err(|e| {
            anyhow::anyhow!("{e}\n(to call a server without its configuration, give --url and --token, or FLEETBUS_URL and FLEETBUS_TOKEN)")
        })?;
        let base = args
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.server.listen));
        let token = match &args.token {
            Some(t) => t.clone(),
            None => config
                .server
                .api_tokens
                .first()
                .context(
                    "server.api_tokens is empty: no token to call the API with (give --token)",
                )?
                .expose()
                .to_owned(),
        };
        Ok(Api { base, token })
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        call(&self.base, "GET", path, &self.token, None)
    }

    pub fn post(&self, path: &str, body: Option<&str>) -> anyhow::Result<Value> {
        call(&self.base, "POST", path, &self.token, body)
    }

    /// POST with a body of another content type (CSV).
    pub fn post_as(&self, path: &str, content_type: &str, body: &[u8]) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let response = agent()
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", content_type)
            .send(body);
        answer(&url, response)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Calls the API with a bearer token; a non-2xx answer is an error carrying the
/// server's JSON message.
pub fn call(
    base: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> anyhow::Result<Value> {
    let agent = agent();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let auth = format!("Bearer {token}");
    let response = match (method, body) {
        ("GET", _) => agent.get(&url).header("Authorization", &auth).call(),
        (_, Some(b)) => agent
            .post(&url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(b),
        (_, None) => agent.post(&url).header("Authorization", &auth).send_empty(),
    };
    answer(&url, response)
}

fn answer(
    url: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> anyhow::Result<Value> {
    let mut response = response.with_context(|| format!("calling {url}"))?;
    let status = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        bail!("{url}: {status}: {message}");
    }
    Ok(value)
}

/// Percent-encodes a path or query component (RFC 3986 unreserved characters kept).
pub fn encode(v: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(v, KEEP).to_string()
}
