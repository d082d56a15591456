//! What the UART drivers share: which driver a device tree `compatible` names (the
//! guest runtime picks its console by it, xtask writes the matching device tree node),
//! and console text's line endings.
#![forbid(unsafe_code)]

/// The UARTs Septum drives, by the `compatible` of their device tree node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    /// [`crate::pl011`].
    Pl011,
    /// [`crate::imx_uart`].
    Imx,
    /// [`crate::bcm2835_aux`].
    MiniUart,
}

/// `compatible` strings of an Arm PL011.
pub const PL011_COMPATIBLE: &[&str] = &["arm,pl011"];

impl UartKind {
    /// The kind of UART a node whose `compatible` list is `compatible` is, if one we
    /// drive. `compatible` is called once per kind.
    pub fn of<'a, I: Iterator<Item = &'a str>>(compatible: impl Fn() -> I) -> Option<Self> {
        let is = |list: &[&str]| compatible().any(|c| list.contains(&c));
        if is(PL011_COMPATIBLE) {
            Some(UartKind::Pl011)
        } else if is(crate::imx_uart::COMPATIBLE) {
            Some(UartKind::Imx)
        } else if is(crate::bcm2835_aux::COMPATIBLE) {
            Some(UartKind::MiniUart)
        } else {
            None
        }
    }
}

/// Writes console text a byte at a time, each `\n` as `\r\n` (what terminals expect).
pub(crate) fn write_text(s: &str, mut write_byte: impl FnMut(u8)) -> core::fmt::Result {
    for b in s.bytes() {
        if b == b'\n' {
            write_byte(b'\r');
        }
        write_byte(b);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_compatible_list() {
        let kind = |list: &[&str]| UartKind::of(|| list.iter().copied());
        assert_eq!(kind(&["arm,pl011", "arm,primecell"]), Some(UartKind::Pl011));
        assert_eq!(kind(&["fsl,imx8mp-uart", "fsl,imx6q-uart"]), Some(UartKind::Imx));
        assert_eq!(kind(&["brcm,bcm2835-aux-uart"]), Some(UartKind::MiniUart));
        assert_eq!(kind(&["arm,pl031", "arm,primecell"]), None);
    }
}
