//! Operating-system glue without domain knowledge: durable writes, renames
//! and fsyncs ([`fsutil`]), the process clock and time formats ([`clock`]),
//! the flag signals set to stop a long step ([`stop`]), and the facade long
//! steps report their progress in bytes to ([`progress`], shared with the
//! shipping crate, whose uploads report to it too).

pub mod clock;
pub mod fsutil;
pub use shipping::progress;
pub mod stop;
pub mod testhook;
