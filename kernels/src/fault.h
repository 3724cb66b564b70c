/* fault.h: fault-injection switches (kernels/FAULTS.md).
 *
 * CMake option IQ1M_FAULT=<name> defines IQ1M_FAULT_<name>=1 (and the upper-case spelling)
 * for every source file; IQ1M_FAULT_IS(name) is then 1 in `#if`, and 0 for every other
 * name (an undefined identifier in #if is 0). With IQ1M_FAULT=none nothing is compiled in.
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
