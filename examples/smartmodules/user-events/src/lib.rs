//! Seed 003: user events whose `account_id`, `timestamp` and `user_client` fields are shown
//! or hidden by the stream's parameters (`-e show_account_id=false`, ...).

use serde::{Deserialize, Serialize};
use sluice_smartmodule::{Record, RecordData, Result, SmartOpt, smartmodule};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserEvent {
    Register(UserEventMetadata),
    Login(UserEventMetadata),
    Logout(UserEventMetadata),
    HomePage(UserEventMetadata),
    PlayDemo(UserEventMetadata),
    ActionA(UserEventMetadata),
    ActionB(UserEventMetadata),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserEventMetadata {
    pub account_id: String,
    pub timestamp: i64,
    pub user_client: String,
}

impl UserEventMetadata {
    fn convert(self, params: &SmartModuleOpt) -> UserEventMetadataOutput {
        UserEventMetadataOutput {
            account_id: params.show_account_id.then_some(self.account_id),
            timestamp: params.show_timestamp.then_some(self.timestamp),
            user_client: params.show_user_client.then_some(self.user_client),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserEventOutput {
    Register(UserEventMetadataOutput),
    Login(UserEventMetadataOutput),
    Logout(UserEventMetadataOutput),
    HomePage(UserEventMetadataOutput),
    PlayDemo(UserEventMetadataOutput),
    ActionA(UserEventMetadataOutput),
    ActionB(UserEventMetadataOutput),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserEventMetadataOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_client: Option<String>,
}

impl UserEvent {
    fn convert(self, params: &SmartModuleOpt) -> UserEventOutput {
        match self {
            UserEvent::Login(m) => UserEventOutput::Login(m.convert(params)),
            UserEvent::Logout(m) => UserEventOutput::Logout(m.convert(params)),
            UserEvent::Register(m) => UserEventOutput::Register(m.convert(params)),
            UserEvent::ActionA(m) => UserEventOutput::ActionA(m.convert(params)),
            UserEvent::ActionB(m) => UserEventOutput::ActionB(m.convert(params)),
            UserEvent::HomePage(m) => UserEventOutput::HomePage(m.convert(params)),
            UserEvent::PlayDemo(m) => UserEventOutput::PlayDemo(m.convert(params)),
        }
    }
}

#[smartmodule(map, params)]
pub fn map(record: &Record, params: &SmartModuleOpt) -> Result<(Option<RecordData>, RecordData)> {
    let event: UserEvent = serde_json::from_slice(record.value.as_ref())?;
    let output = event.convert(params);
    let value = serde_json::to_string(&output)?;
    Ok((record.key.clone(), value.into()))
}

#[derive(SmartOpt)]
pub struct SmartModuleOpt {
    show_account_id: bool,
    show_timestamp: bool,
    show_user_client: bool,
}

impl Default for SmartModuleOpt {
    fn default() -> Self {
        Self {
            show_account_id: true,
            show_timestamp: true,
            show_user_client: true,
        }
    }
}
