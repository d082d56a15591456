//! The board the hypervisor runs on: chosen once, from the board DTB's root
//! `compatible` and GIC, before anything uses the GIC.

use septum_platform::catalog::Board;
use septum_platform::qemu_virt;

static BOARD: spin::Once<&'static Board> = spin::Once::new();

/// Records the board (boot core, once).
pub fn choose(board: &'static Board) {
    BOARD.call_once(|| board);
}

/// The board the hypervisor runs on (QEMU virt until chosen).
pub fn this_board() -> &'static Board {
    BOARD.get().copied().unwrap_or(&qemu_virt::BOARD)
}
