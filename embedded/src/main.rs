//! ropc-core on a Cortex-M4F (QEMU's `mps2-an386`): four whole token grants,
//! each answer checked against the bytes the host gives for the same grant
//! (`expected.txt`, written by ropc-core's host test), then the footprint.
//!
//! Output and the exit code go through semihosting, so `cargo run --release`
//! under QEMU exits 0 only when every answer matched. Nothing here uses
//! `core::fmt`: numbers are written by hand, and the panic handler prints a
//! fixed line, so that the formatter is not linked into the figures.
#![no_std]
#![no_main]

extern crate alloc;

#[cfg(not(feature = "runtime-only"))]
mod scenario;

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicUsize, Ordering};
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hio};
use embedded_alloc::LlffHeap;

/// The heap the engine allocates from. Its size is a ceiling, not a figure:
/// the figure is `heap_peak`.
const HEAP_LEN: usize = 16 * 1024;
static mut HEAP: [MaybeUninit<u8>; HEAP_LEN] = [MaybeUninit::uninit(); HEAP_LEN];

/// The allocator, wrapped to keep the high-water mark of the bytes it has
/// handed out (as the allocator counts them: with its rounding, not the
/// bookkeeping a free block carries).
struct Counting {
    heap: LlffHeap,
    peak: AtomicUsize,
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        let ptr = unsafe { self.heap.alloc(layout) };
        self.peak.fetch_max(self.heap.used(), Ordering::Relaxed);
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above, `ptr` came from `alloc` with this `layout`.
        unsafe { self.heap.dealloc(ptr, layout) }
    }
}

impl Counting {
    /// The peak since the last call, and start a new one from what is in
    /// use now.
    fn take_peak(&self) -> usize {
        self.peak.swap(self.heap.used(), Ordering::Relaxed)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting { heap: LlffHeap::empty(), peak: AtomicUsize::new(0) };

/// The word the free stack is painted with before the grants run.
const PAINT: u32 = 0xdead_c0de;

extern "C" {
    // cortex-m-rt's link.x: where each output section starts and ends.
    static __vector_table: u32;
    static __erodata: u32;
    static __sdata: u32;
    static __edata: u32;
    static __sbss: u32;
    static __ebss: u32;
    static __suninit: u32;
    static __euninit: u32;
    static _stack_start: u32;
}

fn addr<T>(p: *const T) -> usize {
    p as usize
}

/// Console output through semihosting, numbers written without `core::fmt`.
struct Out(Option<hio::HostStream>);

impl Out {
    fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        if let Some(stream) = &mut self.0 {
            let _ = stream.write_all(b);
        }
        self
    }

    fn num(&mut self, mut n: usize) -> &mut Self {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.bytes(&buf[i..])
    }
}

fn out() -> Out {
    Out(hio::hstdout().ok())
}

/// The first word of RAM past the statics: where the stack may grow to.
fn free_ram_bottom() -> usize {
    (addr(addr_of!(__euninit)).max(addr(addr_of!(__ebss))) + 3) & !3
}

/// Fills the free stack, from the end of static RAM to a margin below the
/// stack pointer, with [`PAINT`].
fn paint_stack() {
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = free_ram_bottom();
    while p + 256 < sp {
        // SAFETY: [free_ram_bottom(), sp - 256) is RAM no static and no live frame
        // uses: statics end at `bottom`, and this frame lies above `sp`.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// The deepest the stack has reached: from its top to the lowest word that
/// no longer holds the paint.
fn stack_peak() -> usize {
    let top = addr(addr_of!(_stack_start));
    let mut p = free_ram_bottom();
    // SAFETY: reads of RAM words between the statics and the stack's top.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}

fn fail(out: &mut Out, why: &str) -> ! {
    out.str("FAILED: ").str(why).str("\n");
    debug::exit(debug::EXIT_FAILURE);
    #[allow(clippy::empty_loop)]
    loop {}
}

#[entry]
fn main() -> ! {
    paint_stack();
    // SAFETY: called once, before any allocation; HEAP is used by nothing else.
    unsafe { ALLOC.heap.init(addr_of_mut!(HEAP) as usize, HEAP_LEN) };
    let mut out = out();
    out.str("ropc-core on a Cortex-M4F (QEMU mps2-an386): four grants, checked against the host's bytes\n");

    let (all, heap_peak) = grants(&mut out);

    // SAFETY: addresses of linker symbols, never read.
    let (text, data, bss) = (
        addr(addr_of!(__erodata)) - addr(addr_of!(__vector_table)),
        addr(addr_of!(__edata)) - addr(addr_of!(__sdata)),
        addr(addr_of!(__ebss)) - addr(addr_of!(__sbss)) + addr(addr_of!(__euninit)) - addr(addr_of!(__suninit)),
    );
    out.str("footprint: text=").num(text).str(" data=").num(data).str(" bss=").num(bss);
    out.str(" heap_peak=").num(heap_peak).str(" stack_peak=").num(stack_peak()).str("\n");
    if !all {
        fail(&mut out, "an answer differs from the bytes the host gives (expected.txt)");
    }
    #[cfg(not(feature = "runtime-only"))]
    out.str("all four answers match\n");
    debug::exit(debug::EXIT_SUCCESS);
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Runs the four grants and checks each answer; returns whether all matched,
/// and the heap's peak.
#[cfg(not(feature = "runtime-only"))]
fn grants(out: &mut Out) -> (bool, usize) {
    let expected = include_str!("../expected.txt");
    let mut lines = expected.lines();
    let mut scenario = match scenario::Scenario::new() {
        Ok(s) => s,
        Err(why) => fail(out, why),
    };
    let mut heap_peak = ALLOC.take_peak();
    let mut all = true;
    while let Some(answer) = scenario.next_answer() {
        let answer = match answer {
            Ok(a) => a,
            Err(why) => fail(out, why),
        };
        let grant_peak = ALLOC.take_peak();
        heap_peak = heap_peak.max(grant_peak);
        let ok = lines.next().is_some_and(|line| scenario::matches(line, &answer));
        all &= ok;
        out.str("  ").str(answer.name).str(": ").num(usize::from(answer.status)).str(", ").num(answer.body.len());
        out.str(" bytes, heap ").num(grant_peak).str(" B at the grant's peak: ");
        out.str(if ok { "as on the host\n" } else { "DIFFERS from the host: " });
        if !ok {
            out.bytes(&answer.body).str("\n");
        }
    }
    out.str("  token store: ").num(scenario.device.store.len()).str(" of 8 slots in use\n");
    if lines.next().is_some() {
        all = false;
        out.str("  expected.txt has more lines than there are grants\n");
    }
    (all, heap_peak)
}

/// The same firmware without the engine: its footprint is the runtime's
/// (reset, allocator, semihosting output), to subtract from the whole.
#[cfg(feature = "runtime-only")]
fn grants(out: &mut Out) -> (bool, usize) {
    out.str("  (runtime-only build: no grants)\n");
    (true, ALLOC.take_peak())
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // The message is not printed: formatting it would link `core::fmt`.
    fail(&mut out(), "panic")
}

#[exception]
unsafe fn HardFault(_: &ExceptionFrame) -> ! {
    // Without this, a fault would spin forever and hang the CI run.
    fail(&mut out(), "hard fault")
}
