/* Private Unicode helpers for the tokenizer: the character classes and the
 * lower-casing that OpenAI CLIP's SimpleTokenizer gets from Python (str.isspace,
 * str.strip, str.lower) and from the `regex` module (\s, \p{L}, \p{N} under
 * IGNORECASE). Categories, bidirectional classes and simple case mappings come
 * from utf8proc; the few properties utf8proc lacks (Cased, Case_Ignorable) are
 * derived from them plus short explicit lists. Nothing here allocates. */
#ifndef PCLIP_UNICODE_H
#define PCLIP_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Python's str.isspace(), also what str.strip() removes: general category Zs
 * or bidirectional class WS, B or S. */
bool pclip__uni_isspace(int32_t cp);

/* The regex module's \s: the Unicode White_Space property. It is
 * str.isspace() without U+001C..U+001F (bidi B/S, but not White_Space). */
bool pclip__uni_is_white_space(int32_t cp);

/* Python's Cased (Lowercase, Uppercase or Lt) and Case_Ignorable properties,
 * as CPython's Final_Sigma rule uses them. */
bool pclip__uni_is_cased(int32_t cp);
bool pclip__uni_is_case_ignorable(int32_t cp);

/* Python's str.lower() of in[0..n): full lower-case mappings (U+0130 becomes
 * two code points) and CPython's Final_Sigma rule for U+03A3. `out` needs room
 * for 2 * n code points; returns how many were written. */
size_t pclip__uni_lower(const int32_t *in, size_t n, int32_t *out);

/* How the CLIP pre-tokenizer's classes see one code point under the regex
 * module's IGNORECASE: [\p{L}], [\p{N}], [^\s\p{L}\p{N}], or none of them
 * (the character is skipped, as whitespace is). */
typedef enum pclip__uni_class {
    PCLIP__UNI_CLASS_SKIP,
    PCLIP__UNI_CLASS_LETTER,
    PCLIP__UNI_CLASS_NUMBER,
    PCLIP__UNI_CLASS_OTHER,
    PCLIP__UNI_CLASS_COUNT
} pclip__uni_class;
pclip__uni_class pclip__uni_clip_class(int32_t cp);

/* Whether `cp` matches the ASCII character `lit` of a pattern literal under
 * the regex module's IGNORECASE (simple case folding): 's' also matches
 * U+017F LATIN SMALL LETTER LONG S, 'k' U+212A KELVIN SIGN. */
bool pclip__uni_matches_literal(int32_t cp, char lit);

#endif /* PCLIP_UNICODE_H */
