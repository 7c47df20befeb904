//! The chatroom engine as the benchmark runs it: `Server::run` on one TCP
//! listener, configured from the defaults plus `CHATROOM_<FIELD>`
//! environment variables (the same names the `chatroom-server` binary
//! reads), so a run states exactly which limits it changed.

use std::future::Future;

use chatroom_core::server::{Server, ServerConfig};
use chatroom_core::transport::TcpListener;
use serde_json::Value;

/// The default config with every `CHATROOM_<FIELD>` variable applied.
/// Returns the config and the list of `field=value` it changed.
pub(crate) fn config_from_env() -> Result<(ServerConfig, Vec<String>), String> {
    let Value::Object(mut fields) =
        serde_json::to_value(ServerConfig::default()).map_err(|e| e.to_string())?
    else {
        return Err("ServerConfig is not a struct".to_owned());
    };
    let mut changed = Vec::new();
    for (key, value) in fields.iter_mut() {
        let var = format!("CHATROOM_{}", key.to_ascii_uppercase());
        let Ok(raw) = std::env::var(&var) else {
            continue;
        };
        let parsed = match value {
            Value::String(_) => Value::String(raw.clone()),
            Value::Bool(_) => Value::Bool(raw.parse().map_err(|_| format!("{var}: not a bool"))?),
            Value::Number(n) if n.is_f64() => Value::from(
                raw.parse::<f64>()
                    .map_err(|_| format!("{var}: not a number"))?,
            ),
            _ => Value::from(
                raw.parse::<u64>()
                    .map_err(|_| format!("{var}: not a whole number"))?,
            ),
        };
        changed.push(format!("{key}={raw}"));
        *value = parsed;
    }
    let config = serde_json::from_value(Value::Object(fields)).map_err(|e| e.to_string())?;
    Ok((config, changed))
}

/// Runs the engine on `addr` until `shutdown` completes.
pub(crate) async fn run(
    addr: std::net::SocketAddr,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), String> {
    let (config, changed) = config_from_env()?;
    let listener = TcpListener::bind(addr).await.map_err(|e| e.to_string())?;
    let server = Server::new(config).map_err(|e| e.to_string())?;
    eprintln!(
        "chatroom engine on {} (changed: {})",
        listener.local_socket_addr(),
        if changed.is_empty() {
            "nothing".to_owned()
        } else {
            changed.join(", ")
        }
    );
    server
        .run(listener, shutdown)
        .await
        .map_err(|e| e.to_string())
}
