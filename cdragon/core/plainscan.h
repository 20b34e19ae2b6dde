/* PlainScan: the length of a run of "plain" JSON string bytes (printable ASCII other
 * than '"' and '\\'), 16 bytes at a time with SSE2 where the compiler targets it (every
 * x86-64 does), a byte at a time elsewhere. Used by the POST /db fast path
 * (fastpath.pyx) to step over long values, which are mostly such runs. */
#ifndef CDRAGON_PLAINSCAN_H
#define CDRAGON_PLAINSCAN_H
#include <stddef.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* The index of the first byte of p[i..n) that is '"', '\\', below 0x20 or above 0x7e;
 * n if there is none. */
static inline Py_ssize_t cd_plain_end(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f);
    while (i + 16 <= n) {
        __m128i x = _mm_loadu_si128((const __m128i *)(p + i));
        /* as signed bytes, 0x80..0xff are negative: "below 0x20" catches them too */
        __m128i special = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
            _mm_or_si128(_mm_cmplt_epi8(x, space), _mm_cmpeq_epi8(x, del)));
        int mask = _mm_movemask_epi8(special);
        if (mask)
            return i + __builtin_ctz((unsigned)mask);
        i += 16;
    }
#endif
    while (i < n) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\' || c < 0x20 || c > 0x7e)
            return i;
        i++;
    }
    return n;
}
#endif
