#version 450
// y[i] = table[idx[i]]
//
// An index outside the table gives a row of zeros. A table larger than the
// device's maxStorageBufferRange (ViT-L's token embedding is 152 MB, lavapipe
// binds at most 128 MiB) comes in up to three parts, bound at 0, 2 and 3,
// each holding part_rows = length(part 0) / cols rows (the last may hold
// fewer); small tables use part 0 only.
#include "common.glsl"

// pclip__gather_rows_params
layout(push_constant) uniform Params {
    int rows, cols, table_rows;
} p;

layout(binding = 0) readonly buffer T0 { float table0[]; };
layout(binding = 1) readonly buffer Idx { int idx[]; };
layout(binding = 2) readonly buffer T1 { float table1[]; };
layout(binding = 3) readonly buffer T2 { float table2[]; };
layout(binding = PCLIP_BINDING_DST) writeonly buffer Y { float y[]; };

void main() {
    uint e = pclip_global_index();
    uint cols = uint(p.cols);
    if (e >= uint(p.rows) * cols) return;
    uint i = e / cols, j = e % cols;
    int k = idx[i];
    float v = 0.0;
    if (k >= 0 && k < p.table_rows) {
        uint part_rows = uint(table0.length()) / cols;
        uint part = uint(k) / part_rows, r = uint(k) % part_rows;
        uint at = r * cols + j;
        v = part == 0u ? table0[at] : part == 1u ? table1[at] : table2[at];
    }
    y[e] = v;
}
