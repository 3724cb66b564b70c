"""Run by test_allocation_failure.py with alloc_fail_shim.so preloaded, on the C ABI alone.
Every op on both paths with 4 threads, with the shim counting each block the library
allocates (its thread pool's scratch too) and each it frees; then the library is unloaded
(dlclose), whose destructor stops the pool. Exit status 0: no block of the library is left
(a host that unloads the library, a plugin, gets all of its memory back); 1: some are,
printed."""
import _ctypes
import ctypes
import sys

from abi_case import every_op_case, library_span, load

shim = ctypes.CDLL(sys.argv[2])
shim.alloc_fail_arm.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_long]
shim.alloc_fail_count.restype = shim.alloc_fail_live.restype = ctypes.c_long
lib = load(sys.argv[1])
lo, hi = library_span(sys.argv[1])
shim.alloc_fail_count_aligned(1)
shim.alloc_fail_arm(lo, hi, 0)  # count, fail nothing
for case in every_op_case(lib).values():
    case.run(4)
held, made = shim.alloc_fail_live(), shim.alloc_fail_count()
_ctypes.dlclose(lib._handle)  # nothing calls into the library after this
left = shim.alloc_fail_live()
shim.alloc_fail_disarm()
if made == 0:
    print("no allocation of the library was seen: is the shim preloaded?")
elif left != 0:
    print(f"after unloading the library, {left if left > 0 else 'too many'} of its blocks are still allocated "
          f"({held} were before, of {made} allocations)")
else:
    print(f"ok: {made} allocations, {held} blocks held before unloading, none after")
sys.exit(0 if made and left == 0 else 1)
