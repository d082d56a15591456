//! One sample as the front end delivers it.

/// One ECG sample, already scaled to microvolts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// The lead's voltage in microvolts.
    Microvolts(i32),
    /// The front end flags an electrode off at this sample: no voltage.
    LeadsOff,
}
