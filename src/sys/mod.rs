//! Operating-system glue without domain knowledge: durable writes, renames
//! and fsyncs ([`fsutil`]), the process clock and time formats ([`clock`]).

pub mod clock;
pub mod fsutil;
pub mod testhook;
