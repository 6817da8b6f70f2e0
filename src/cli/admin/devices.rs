//! `usher admin device …` and `usher admin session …`.

use http::Method;
use serde_json::{json, Value};

use super::args::{DeviceCommand, SessionCommand};
use super::{emit, encode, field, AdminCliError, AdminClient};

/// Runs one `device` subcommand.
///
/// # Errors
/// The API's refusal, or a failure to reach it.
pub async fn device(api: &AdminClient, command: DeviceCommand) -> Result<(), AdminCliError> {
    match command {
        DeviceCommand::List { hash } => {
            api.list_all(&format!("buyers/{}/devices", encode(&hash)), &[])
                .await
        }
        DeviceCommand::Add {
            hash,
            device,
            user_agent,
        } => {
            let body = json!({ "device": device, "user_agent": user_agent });
            let path = format!("buyers/{}/devices", encode(&hash));
            let bound = api.call(Method::POST, &path, Some(&body)).await?;
            emit(&field(&bound, "device")?)
        }
        DeviceCommand::Delete { hash, device } => {
            let path = format!("buyers/{}/devices/{}", encode(&hash), encode(&device));
            let freed = api.call(Method::DELETE, &path, None).await?;
            let hash = field(&freed, "freed")?;
            // The free stands, but with shared sessions Redis may not have been reached:
            // the device may play on on other nodes, which the operator must hear of.
            if freed.get("announced") == Some(&Value::Bool(false)) {
                let reason = freed.get("reason").and_then(Value::as_str).unwrap_or(
                    "the device's sessions on other nodes may play on: Redis could not be reached",
                );
                eprintln!("usher: {reason}");
            }
            emit(&hash)
        }
    }
}

/// Runs one `session` subcommand.
///
/// # Errors
/// The API's refusal, or a failure to reach it.
pub async fn session(api: &AdminClient, command: SessionCommand) -> Result<(), AdminCliError> {
    match command {
        SessionCommand::List { account, product } => {
            let mut filters = Vec::new();
            filters.extend(account.as_deref().map(|a| ("account", a)));
            filters.extend(product.as_deref().map(|p| ("product", p)));
            api.list_all("sessions", &filters).await
        }
        SessionCommand::End { sid } => {
            let path = format!("sessions/{}", encode(&sid));
            api.call(Method::DELETE, &path, None).await?;
            emit(&sid)
        }
    }
}
