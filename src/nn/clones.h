// CELERIAC_CLONES: a function attribute that makes GCC emit an AVX2+FMA (x86-64-v3) version next
// to the baseline one and pick between them when the library loads, so hot loops use the
// machine's vector units while the binary still runs on any x86-64. Used on the loops written for
// the vectoriser (nn/vmath.cc, florence/bart_kv_cache.cc).
#pragma once

#define CELERIAC_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
