/* Unicode character classes and lower-casing as Python 3 and the `regex`
 * module define them, for the CLIP tokenizer (see unicode.h). utf8proc gives
 * categories, bidirectional classes and simple case mappings; the rest is
 * spelled out here from the Unicode data files Python is built from.
 *
 * Versions: Python 3.11 uses Unicode 14.0, the regex module (2022.10.31) and
 * utf8proc 2.8 use Unicode 15.0. Code points first assigned in Unicode 15 can
 * therefore differ from Python in the Cased / Case_Ignorable tests (which only
 * steer the Final_Sigma rule); everything else was checked against Python for
 * every code point. */
#include <utf8proc.h>

#include "text/unicode.h"

/* ---- whitespace ---- */

bool pclip__uni_isspace(int32_t cp) {
    if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
    const utf8proc_property_t *p = utf8proc_get_property(cp);
    /* CPython's makeunicodedata.py: SPACE_MASK for bidi WS, B, S or category Zs. */
    return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

bool pclip__uni_is_white_space(int32_t cp) {
    /* The information separators U+001C..U+001F are bidi B/S but not White_Space. */
    return pclip__uni_isspace(cp) && !(cp >= 0x1C && cp <= 0x1F);
}

/* ---- Cased and Case_Ignorable (DerivedCoreProperties.txt) ---- */

typedef struct uni_range {
    int32_t lo, hi;
} uni_range;

static bool in_ranges(const uni_range *r, size_t n, int32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].lo) {
            hi = mid;
        } else if (cp > r[mid].hi) {
            lo = mid + 1;
        } else {
            return true;
        }
    }
    return false;
}

/* Other_Lowercase and Other_Uppercase from PropList.txt (Unicode 14, as in
 * Python 3.11): Cased = Lu + Ll + Lt + these. */
static const uni_range other_cased[] = {
    {0x00AA, 0x00AA},   {0x00BA, 0x00BA},   {0x02B0, 0x02B8},   {0x02C0, 0x02C1},
    {0x02E0, 0x02E4},   {0x0345, 0x0345},   {0x037A, 0x037A},   {0x1D2C, 0x1D6A},
    {0x1D78, 0x1D78},   {0x1D9B, 0x1DBF},   {0x2071, 0x2071},   {0x207F, 0x207F},
    {0x2090, 0x209C},   {0x2160, 0x217F},   {0x24B6, 0x24E9},   {0x2C7C, 0x2C7D},
    {0xA69C, 0xA69D},   {0xA770, 0xA770},   {0xA7F8, 0xA7F9},   {0xAB5C, 0xAB5F},
    {0x10780, 0x10780}, {0x10783, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA},
    {0x1F130, 0x1F149}, {0x1F150, 0x1F169}, {0x1F170, 0x1F189},
};

/* Word_Break MidLetter, MidNumLet and Single_Quote (WordBreakProperty.txt):
 * Case_Ignorable = Mn + Me + Cf + Lm + Sk + these. */
static const uni_range word_break_mid[] = {
    {0x0027, 0x0027}, {0x002E, 0x002E}, {0x003A, 0x003A}, {0x00B7, 0x00B7},
    {0x0387, 0x0387}, {0x055F, 0x055F}, {0x05F4, 0x05F4}, {0x2018, 0x2019},
    {0x2024, 0x2024}, {0x2027, 0x2027}, {0xFE13, 0xFE13}, {0xFE52, 0xFE52},
    {0xFE55, 0xFE55}, {0xFF07, 0xFF07}, {0xFF0E, 0xFF0E}, {0xFF1A, 0xFF1A},
};

#define UNI_COUNT(a) (sizeof(a) / sizeof((a)[0]))

bool pclip__uni_is_cased(int32_t cp) {
    utf8proc_category_t c = utf8proc_category(cp);
    if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT)
        return true;
    return in_ranges(other_cased, UNI_COUNT(other_cased), cp);
}

bool pclip__uni_is_case_ignorable(int32_t cp) {
    utf8proc_category_t c = utf8proc_category(cp);
    if (c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_CF ||
        c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_SK)
        return true;
    return in_ranges(word_break_mid, UNI_COUNT(word_break_mid), cp);
}

/* ---- lower-casing ---- */

/* CPython's handle_capital_sigma: U+03A3 becomes final sigma when
 * \p{Cased} \p{Case_Ignorable}* U+03A3 !(\p{Case_Ignorable}* \p{Cased}).
 * Linear overall: each scan stops at the first character that is not
 * Case_Ignorable, and a sigma is not, so a run is scanned by at most the two
 * sigmas around it. */
static int32_t lower_sigma(const int32_t *s, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && pclip__uni_is_case_ignorable(s[j - 1])) j--;
    if (j == 0 || !pclip__uni_is_cased(s[j - 1])) return 0x3C3;
    for (j = i + 1; j < n; j++) {
        if (!pclip__uni_is_case_ignorable(s[j])) return pclip__uni_is_cased(s[j]) ? 0x3C3 : 0x3C2;
    }
    return 0x3C2;
}

size_t pclip__uni_lower(const int32_t *in, size_t n, int32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = in[i];
        if (c < 0x80) {
            out[k++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (c == 0x130) {
            /* SpecialCasing.txt's only unconditional multi-character lower-case
             * mapping: LATIN CAPITAL LETTER I WITH DOT ABOVE -> i + COMBINING DOT ABOVE. */
            out[k++] = 'i';
            out[k++] = 0x307;
        } else if (c == 0x3A3) {
            out[k++] = lower_sigma(in, n, i);
        } else {
            out[k++] = utf8proc_tolower(c);
        }
    }
    return k;
}

/* ---- the CLIP pattern's classes ---- */

pclip__uni_class pclip__uni_clip_class(int32_t cp) {
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return PCLIP__UNI_CLASS_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return PCLIP__UNI_CLASS_NUMBER;
    default:
        break;
    }
    if (pclip__uni_is_white_space(cp)) return PCLIP__UNI_CLASS_SKIP;
    /* U+0345 COMBINING GREEK YPOGEGRAMMENI (Mn) is the one exception, found by
     * testing every code point against the regex module: under IGNORECASE
     * neither [\p{L}] nor [^\s\p{L}\p{N}] matches it (its case variants
     * U+0399 and U+03B9 are letters, which defeats the negated class), so no
     * alternative matches and findall skips it as it skips whitespace. */
    if (cp == 0x345) return PCLIP__UNI_CLASS_SKIP;
    return PCLIP__UNI_CLASS_OTHER;
}

bool pclip__uni_matches_literal(int32_t cp, char lit) {
    int32_t l = (unsigned char)lit;
    if (cp == l) return true;
    if (l >= 'a' && l <= 'z') {
        if (cp == l - 32) return true;
        /* The non-ASCII characters whose simple case folding is an ASCII letter. */
        return (l == 's' && cp == 0x17F) || (l == 'k' && cp == 0x212A) || (l == 'i' && cp == 0x130);
    }
    if (l >= 'A' && l <= 'Z') {
        if (cp == l + 32) return true;
        return (l == 'S' && cp == 0x17F) || (l == 'K' && cp == 0x212A) || (l == 'I' && cp == 0x130);
    }
    return false;
}
