//! The MDM servers fleetbus speaks to: one type for the config (`server:` of an mdm
//! target, `kind:` of a webhook source), webhook parsing and command enqueueing.

use crate::webhook::WebhookEvent;
use crate::MdmError;

/// NanoMDM or MicroMDM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MdmServer {
    NanoMdm,
    MicroMdm,
}

impl MdmServer {
    /// As written in the config: `nanomdm`, `micromdm`.
    pub fn as_str(self) -> &'static str {
        match self {
            MdmServer::NanoMdm => "nanomdm",
            MdmServer::MicroMdm => "micromdm",
        }
    }

    /// The `source` of the events its webhook makes: `mdm.nanomdm`, `mdm.micromdm`.
    pub fn event_source(self) -> &'static str {
        match self {
            MdmServer::NanoMdm => "mdm.nanomdm",
            MdmServer::MicroMdm => "mdm.micromdm",
        }
    }

    /// Parses one body of this server's webhook.
    pub fn parse_webhook(self, body: &[u8]) -> Result<Vec<WebhookEvent>, MdmError> {
        crate::webhook::parse_body(body, self)
    }
}
