//! Operating-system glue without domain knowledge: durable writes, renames
//! and fsyncs ([`fsutil`]), the process clock and time formats ([`clock`]),
//! the flag signals set to stop a long step ([`stop`]).

pub mod clock;
pub mod fsutil;
pub mod stop;
pub mod testhook;
