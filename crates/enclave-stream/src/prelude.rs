//! The common imports: `use enclave_stream::prelude::*;` brings the types most programs
//! name, from every layer that is turned on. The name every layer shares (`Error`) is
//! left out; reach it through its layer's module.

pub use enclave_types::{
    EncryptionMode, EventPayload, EventType, FinalPayload, RuntimeChannelMessage,
    RuntimeChannelPayload, SessionId, StdoutPayload, StreamEvent, ToolCallPayload,
    ToolResultSubmitPayload,
};

#[cfg(feature = "ndjson")]
pub use enclave_ndjson::{
    parse_ndjson, stringify_ndjson, NdjsonCodec, StreamDecoder, StreamEncoder,
};

#[cfg(feature = "crypto")]
pub use crate::channel::{ChannelError, ChannelLink};
#[cfg(feature = "crypto")]
pub use enclave_crypto::{
    create_encrypted_channel, decrypt, derive_shared_secret, encrypt, generate_key_pair,
    EncryptedChannel, PendingChannel, PublicKey, Role,
};

#[cfg(feature = "transport")]
pub use enclave_transport::client::{ClientConfig, NewSession};
#[cfg(feature = "transport")]
pub use enclave_transport::{Server, ServerConfig};

// The store's core trait, the capability of a store several servers share, and the default.
#[cfg(feature = "reconnect")]
pub use enclave_reconnect::store::{MemoryStore, Sharing, Store};
#[cfg(feature = "reconnect")]
pub use enclave_reconnect::{
    AcceptedSession, Hub, HubConfig, Limit, ReconnectPolicy, ReconnectingStream, ServerBuilder,
    SessionHandle, StreamConfig, StreamError,
};
