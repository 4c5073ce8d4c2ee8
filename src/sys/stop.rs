//! The stop flag long steps check: see [`StopFlag`].

/// Asked by long steps (exports) between operations and chunks: set, by
/// the command-line layer's signal handlers, to the number of the signal
/// that asks the process to stop. The library never installs handlers.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl StopFlag {
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    /// The shared cell a handler stores the signal number into
    /// (`signal_hook::flag::register_usize`).
    pub fn cell(&self) -> &std::sync::Arc<std::sync::atomic::AtomicUsize> {
        &self.0
    }

    /// The signal that asked to stop, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            signal => i32::try_from(signal).ok(),
        }
    }

    /// [`crate::Error::Interrupted`] once a signal asked to stop.
    pub fn check(&self) -> crate::error::Result<()> {
        match self.signal() {
            None => Ok(()),
            Some(signal) => Err(crate::error::Error::Interrupted { signal }),
        }
    }
}
