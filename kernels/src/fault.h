/* fault.h: fault-injection switches (kernels/FAULTS.md, names in kernels/faults.txt).
 *
 * CMake option IQ1M_FAULT=<name>[,<name>...] defines IQ1M_FAULT_<name>=1 (and the upper-case
 * spelling) for every listed point in every source file; IQ1M_FAULT_IS(name) is then 1 in
 * `#if`, and 0 for every other name (an undefined identifier in #if is 0). With
 * IQ1M_FAULT=none nothing is compiled in. The core points are reached through the hooks of
 * faults.h; the SIMD-level points test IQ1M_FAULT_IS in their kernel's file.
 */
#ifndef IQ1M_FAULT_H
#define IQ1M_FAULT_H

#ifndef IQ1M_FAULT_IS
#define IQ1M_FAULT_IS(name) IQ1M_FAULT_##name
#endif

#ifndef IQ1M_FAULT_NAME
#define IQ1M_FAULT_NAME "none"
#endif

#endif /* IQ1M_FAULT_H */
