// Position-sensitive ROI pooling as in R-FCN (average over each bin).
//
// Written for torchcaffe.  Semantics: ROI rows are
// [batch_index, x1, y1, x2, y2]; the raw coordinates are rounded half away
// from zero FIRST and then scaled (x2/y2 get +1 before scaling: the end is
// exclusive); box sizes are floats of at least 0.1; bin edges are
// floor(start) / ceil(end) of the float bin positions (origin added before
// floor/ceil), clipped to the map; output channel ctop of bin (ph, pw) reads
// input channel (ctop * k + ph) * k + pw; an empty bin gives 0.
//
// Like roi_pooling.cu this also compiles as host C++ for the test suite.

#define TC_PS_GRID_LOOP(i, n)                                         \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; \
       i < (n); i += (long long)blockDim.x * gridDim.x)

__device__ __forceinline__ int tc_ps_clampi(int v, int lo, int hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// Bin (ph, pw) of ROI r: image index and clipped window.
__device__ __forceinline__ void tc_ps_bin(const float* rois, long long r,
                                          float spatial_scale, int group_size,
                                          int height, int width, int ph,
                                          int pw, int* batch, int* hs, int* he,
                                          int* ws, int* we) {
  const float* roi = rois + r * 5;
  *batch = (int)roi[0];
  const float x1 = (float)roundf(roi[1]) * spatial_scale;
  const float y1 = (float)roundf(roi[2]) * spatial_scale;
  const float x2 = (float)(roundf(roi[3]) + 1.f) * spatial_scale;
  const float y2 = (float)(roundf(roi[4]) + 1.f) * spatial_scale;
  float rw = x2 - x1;
  float rh = y2 - y1;
  if (rw < 0.1f) rw = 0.1f;
  if (rh < 0.1f) rh = 0.1f;
  const float bin_h = rh / (float)group_size;
  const float bin_w = rw / (float)group_size;
  int h0 = (int)floorf((float)ph * bin_h + y1);
  int w0 = (int)floorf((float)pw * bin_w + x1);
  int h1 = (int)ceilf((float)(ph + 1) * bin_h + y1);
  int w1 = (int)ceilf((float)(pw + 1) * bin_w + x1);
  *hs = tc_ps_clampi(h0, 0, height);
  *he = tc_ps_clampi(h1, 0, height);
  *ws = tc_ps_clampi(w0, 0, width);
  *we = tc_ps_clampi(w1, 0, width);
}

// One thread per top element (r, ctop, ph, pw).
extern "C" __global__ void psroi_pool_forward(
    const long long nthreads, const float* __restrict__ bottom,
    const float spatial_scale, const int channels, const int height,
    const int width, const int group_size, const int output_dim,
    const float* __restrict__ rois, float* __restrict__ top,
    int* __restrict__ mapping_channel) {
  TC_PS_GRID_LOOP(index, nthreads) {
    const int pw = (int)(index % group_size);
    const int ph = (int)((index / group_size) % group_size);
    const int ctop = (int)((index / group_size / group_size) % output_dim);
    const long long r = index / group_size / group_size / output_dim;

    int b, hs, he, ws, we;
    tc_ps_bin(rois, r, spatial_scale, group_size, height, width, ph, pw, &b,
              &hs, &he, &ws, &we);
    const bool empty = (he <= hs) || (we <= ws);
    const int c = (ctop * group_size + ph) * group_size + pw;
    const float* plane =
        bottom + ((long long)b * channels + c) * (long long)height * width;
    float sum = 0.f;
    for (int h = hs; h < he; ++h) {
      for (int w = ws; w < we; ++w) {
        sum += plane[h * width + w];
      }
    }
    const float area = (float)((he - hs) * (we - ws));
    top[index] = empty ? 0.f : sum / area;
    mapping_channel[index] = c;
  }
}

// One thread per top element: spreads top_diff / area over its bin with
// atomic adds (bottom_diff must be zeroed by the caller).
extern "C" __global__ void psroi_pool_backward(
    const long long nthreads, const float* __restrict__ top_diff,
    const float spatial_scale, const int channels, const int height,
    const int width, const int group_size, const int output_dim,
    const float* __restrict__ rois, float* __restrict__ bottom_diff) {
  TC_PS_GRID_LOOP(index, nthreads) {
    const int pw = (int)(index % group_size);
    const int ph = (int)((index / group_size) % group_size);
    const int ctop = (int)((index / group_size / group_size) % output_dim);
    const long long r = index / group_size / group_size / output_dim;

    int b, hs, he, ws, we;
    tc_ps_bin(rois, r, spatial_scale, group_size, height, width, ph, pw, &b,
              &hs, &he, &ws, &we);
    if ((he <= hs) || (we <= ws)) continue;
    const int c = (ctop * group_size + ph) * group_size + pw;
    float* plane =
        bottom_diff + ((long long)b * channels + c) * (long long)height * width;
    const float area = (float)((he - hs) * (we - ws));
    const float g = top_diff[index] / area;
    for (int h = hs; h < he; ++h) {
      for (int w = ws; w < we; ++w) {
        atomicAdd(plane + h * width + w, g);
      }
    }
  }
}
