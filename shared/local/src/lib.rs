//! snapnest's local adapters, for development, the demo and the tests: the embedded store
//! ([`embedded::EmbeddedStore`], SQLite shared by every local function process) and the
//! simulated cloud ([`simulated::SimulatedCloud`]), whose calls [`retry::RetryingProvider`]
//! retries the way the AWS SDK retries real ones, a work queue held in the process
//! ([`queue::InProcessQueue`]) and an event bus held in the process ([`events::InProcessBus`]).

pub mod embedded;
pub mod events;
pub mod queue;
pub mod retry;
pub mod simulated;
