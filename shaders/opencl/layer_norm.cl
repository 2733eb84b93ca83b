// y = (x - mean) / sqrt(var + eps) * g + b, per row
//
// As torch.nn.LayerNorm: the mean, then the biased variance of x - mean (two
// passes, no E[x^2] - E[x]^2 cancellation), then the affine map. One
// work-group of ROW_LS work-items per row; sums are common.cl's reductions.

// pclip__layer_norm_params
kernel __attribute__((reqd_work_group_size(ROW_LS, 1, 1))) void
layer_norm(global const float *x, uint xo, global const float *g, uint go,
           global const float *beta, uint bo, global float *y, uint yo,
           pclip__layer_norm_params p) {
    local float red[ROW_LS];
    const size_t row = get_group_id(0);
    const int lid = get_local_id(0), cols = p.cols;
    global const float *xr = x + xo + row * cols;
    global float *yr = y + yo + row * cols;
    float s = 0.0f;
    for (int j = lid; j < cols; j += ROW_LS) s += xr[j];
    const float mean = pclip_sum(red, s) / (float)cols;
    float q = 0.0f;
    for (int j = lid; j < cols; j += ROW_LS) {
        float d = xr[j] - mean;
        q += d * d;
    }
    const float rstd = 1.0f / sqrt(pclip_sum(red, q) / (float)cols + p.eps);
    for (int j = lid; j < cols; j += ROW_LS)
        yr[j] = (xr[j] - mean) * rstd * g[go + j] + beta[bo + j];
}
