// glibc's malloc statistics (mallinfo2), for the memory benchmarks; not part of the Glibc module.
#if __has_include(<malloc.h>)
#include <malloc.h>
#endif
