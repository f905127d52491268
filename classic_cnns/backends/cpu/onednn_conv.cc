// 2-D convolutions on the CPU through oneDNN, as XLA FFI handlers (classic_cnns/kernels/onednn.py).
//
// Activations NHWC, kernels HWIO, float32 -- the layouts flax's nn.Conv already uses, so nothing is
// transposed on the JAX side. Three handlers: forward, backward-data (dx) and backward-weights (dw).
// The convolution is created with the kernel layout left to oneDNN (`format_tag::any`), which picks
// its blocked JIT / brgemm kernels; the HWIO kernel is reordered into that layout per call (a few KB
// to MB). oneDNN primitives are expensive to create (JIT code generation) and cheap to run, so they
// are cached per geometry for the life of the process.
//
// XLA runs independent ops at once, so one cached primitive (two convolutions of one geometry, e.g.
// parallel Inception branches or the weight gradients of a ResNet stage) may execute on two threads
// at the same time. oneDNN allows that only with a user-managed scratchpad not shared between the
// executions: every primitive here is created with `scratchpad_mode::user` and each execution gets
// the calling thread's own scratchpad buffer (with the library's scratchpad, concurrent executions of
// one primitive returned wrong results).
//
// Builds against oneDNN 2.x (Debian 12's libdnnl-dev 2.6) and 3.x (the primitive-descriptor API).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using Tag = dnnl::memory::format_tag;
using DataType = dnnl::memory::data_type;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Primitives take their scratchpad from the caller (see the top of the file).
dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// The calling thread's scratchpad for one execution (grown as needed, 64-byte aligned). Executions
// on one thread run one after another (each waits for its stream), so they may share it.
memory Scratchpad(const memory::desc& desc) {
  struct Buffer {
    std::unique_ptr<char[]> data;
    size_t size = 0;
  };
  thread_local Buffer buffer;
  size_t need = desc.get_size() + 64;
  if (buffer.size < need) {
    buffer.data.reset(new char[need]);
    buffer.size = need;
  }
  void* p = buffer.data.get();
  size_t space = buffer.size;
  return memory(desc, Engine(), std::align(64, desc.get_size(), p, space));
}

// x[N,H,W,C] (*) w[KH,KW,C,O] -> y[N,OH,OW,O], strides (sh, sw), padding top/bottom/left/right.
struct Geometry {
  int64_t n, h, w, c, kh, kw, o, oh, ow, sh, sw, pt, pb, pl, pr;

  std::string Key(const char* pass) const {
    std::string key = pass;
    for (int64_t v : {n, h, w, c, kh, kw, o, oh, ow, sh, sw, pt, pb, pl, pr}) key += "," + std::to_string(v);
    return key;
  }
  // oneDNN names dimensions logically (N, C, H, W) / (O, I, H, W); the tag gives the memory order.
  memory::desc Src() const { return memory::desc({n, c, h, w}, DataType::f32, Tag::nhwc); }
  memory::desc Dst() const { return memory::desc({n, o, oh, ow}, DataType::f32, Tag::nhwc); }
  memory::desc Hwio() const { return memory::desc({o, c, kh, kw}, DataType::f32, Tag::hwio); }
  memory::desc AnyWeights() const { return memory::desc({o, c, kh, kw}, DataType::f32, Tag::any); }
  memory::dims Strides() const { return {sh, sw}; }
  memory::dims PadL() const { return {pt, pl}; }
  memory::dims PadR() const { return {pb, pr}; }
};

Geometry FromShapes(ffi::Span<const int64_t> x, ffi::Span<const int64_t> w, ffi::Span<const int64_t> y,
                    int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  return Geometry{x[0], x[1], x[2], x[3], w[0], w[1], w[3], y[1], y[2], sh, sw, pt, pb, pl, pr};
}

void Verbose(const char* pass, const Geometry& g, const char* impl) {
  if (std::getenv("CLASSIC_CNNS_ONEDNN_VERBOSE")) std::fprintf(stderr, "onednn %s: %s\n", g.Key(pass).c_str(), impl);
}

#if DNNL_VERSION_MAJOR >= 3
dnnl::convolution_forward::primitive_desc ForwardPd(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, g.Src(),
      g.AnyWeights(), g.Dst(), g.Strides(), g.PadL(), g.PadR(), UserScratchpad());
}
dnnl::convolution_backward_data::primitive_desc BackwardDataPd(const Geometry& g) {
  return dnnl::convolution_backward_data::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, g.Src(), g.AnyWeights(), g.Dst(), g.Strides(),
      g.PadL(), g.PadR(), ForwardPd(g), UserScratchpad());
}
dnnl::convolution_backward_weights::primitive_desc BackwardWeightsPd(const Geometry& g) {
  return dnnl::convolution_backward_weights::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, g.Src(), g.AnyWeights(), g.Dst(), g.Strides(),
      g.PadL(), g.PadR(), ForwardPd(g), UserScratchpad());
}
#else
dnnl::convolution_forward::primitive_desc ForwardPd(const Geometry& g) {
  dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                    g.Src(), g.AnyWeights(), g.Dst(), g.Strides(), g.PadL(), g.PadR());
  return dnnl::convolution_forward::primitive_desc(d, UserScratchpad(), Engine());
}
dnnl::convolution_backward_data::primitive_desc BackwardDataPd(const Geometry& g) {
  dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, g.Src(), g.AnyWeights(),
                                          g.Dst(), g.Strides(), g.PadL(), g.PadR());
  return dnnl::convolution_backward_data::primitive_desc(d, UserScratchpad(), Engine(), ForwardPd(g));
}
dnnl::convolution_backward_weights::primitive_desc BackwardWeightsPd(const Geometry& g) {
  dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, g.Src(), g.AnyWeights(),
                                             g.Dst(), g.Strides(), g.PadL(), g.PadR());
  return dnnl::convolution_backward_weights::primitive_desc(d, UserScratchpad(), Engine(),
                                                           ForwardPd(g));
}
#endif

// A convolution and the reorder between the caller's HWIO kernel and the layout it chose.
struct Conv {
  dnnl::primitive conv;
  memory::desc conv_scratchpad;
  memory::desc weights;
  bool reorder_needed = false;
  dnnl::primitive reorder;  // HWIO -> weights (forward, backward-data); weights -> HWIO (backward-weights)
  memory::desc reorder_scratchpad;
};

template <typename PrimitiveDesc>
Conv MakeConv(dnnl::primitive conv, const PrimitiveDesc& pd, const memory::desc& weights, const Geometry& g,
              bool into_conv_layout) {
  Conv result{conv, pd.scratchpad_desc(), weights};
  result.reorder_needed = weights != g.Hwio();
  if (result.reorder_needed) {
    memory::desc hwio = g.Hwio();
    auto rpd = into_conv_layout
                   ? dnnl::reorder::primitive_desc(Engine(), hwio, Engine(), weights, UserScratchpad())
                   : dnnl::reorder::primitive_desc(Engine(), weights, Engine(), hwio, UserScratchpad());
    result.reorder = dnnl::reorder(rpd);
    result.reorder_scratchpad = rpd.scratchpad_desc();
  }
  return result;
}

template <typename Make>
Conv Cached(const std::string& key, Make make) {
  static std::mutex mu;
  static auto* cache = new std::unordered_map<std::string, Conv>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(key);
  if (it == cache->end()) it = cache->emplace(key, make()).first;
  return it->second;
}

// Executes `p` with `args` and the calling thread's scratchpad of `scratchpad`'s size.
void Run(const dnnl::primitive& p, const memory::desc& scratchpad, std::unordered_map<int, memory> args) {
  args[DNNL_ARG_SCRATCHPAD] = Scratchpad(scratchpad);
  dnnl::stream stream(Engine());
  p.execute(stream, args);
  stream.wait();
}

memory KernelForConv(const Conv& conv, const memory& hwio) {
  if (!conv.reorder_needed) return hwio;
  memory blocked(conv.weights, Engine());
  Run(conv.reorder, conv.reorder_scratchpad, {{DNNL_ARG_FROM, hwio}, {DNNL_ARG_TO, blocked}});
  return blocked;
}

template <typename Body>
ffi::Error Guarded(Body body) {
  try {
    body();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN convolution failed: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> y,
                   int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  return Guarded([&] {
    Geometry g = FromShapes(x.dimensions(), w.dimensions(), y->dimensions(), sh, sw, pt, pb, pl, pr);
    Conv conv = Cached(g.Key("forward"), [&] {
      auto pd = ForwardPd(g);
      Verbose("forward", g, pd.impl_info_str());
      return MakeConv(dnnl::convolution_forward(pd), pd, pd.weights_desc(), g, true);
    });
    memory kernel = KernelForConv(conv, memory(g.Hwio(), Engine(), w.typed_data()));
    Run(conv.conv, conv.conv_scratchpad,
        {{DNNL_ARG_SRC, memory(g.Src(), Engine(), x.typed_data())},
                    {DNNL_ARG_WEIGHTS, kernel},
                    {DNNL_ARG_DST, memory(g.Dst(), Engine(), y->typed_data())}});
  });
}

ffi::Error BackwardData(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> dx,
                        int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  return Guarded([&] {
    Geometry g = FromShapes(dx->dimensions(), w.dimensions(), dy.dimensions(), sh, sw, pt, pb, pl, pr);
    Conv conv = Cached(g.Key("backward_data"), [&] {
      auto pd = BackwardDataPd(g);
      Verbose("backward_data", g, pd.impl_info_str());
      return MakeConv(dnnl::convolution_backward_data(pd), pd, pd.weights_desc(), g, true);
    });
    memory kernel = KernelForConv(conv, memory(g.Hwio(), Engine(), w.typed_data()));
    Run(conv.conv, conv.conv_scratchpad,
        {{DNNL_ARG_DIFF_DST, memory(g.Dst(), Engine(), dy.typed_data())},
                    {DNNL_ARG_WEIGHTS, kernel},
                    {DNNL_ARG_DIFF_SRC, memory(g.Src(), Engine(), dx->typed_data())}});
  });
}

ffi::Error BackwardWeights(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy, ffi::ResultBuffer<ffi::F32> dw,
                           int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  return Guarded([&] {
    Geometry g = FromShapes(x.dimensions(), dw->dimensions(), dy.dimensions(), sh, sw, pt, pb, pl, pr);
    Conv conv = Cached(g.Key("backward_weights"), [&] {
      auto pd = BackwardWeightsPd(g);
      Verbose("backward_weights", g, pd.impl_info_str());
      return MakeConv(dnnl::convolution_backward_weights(pd), pd, pd.diff_weights_desc(), g, false);
    });
    memory hwio(g.Hwio(), Engine(), dw->typed_data());
    memory out = conv.reorder_needed ? memory(conv.weights, Engine()) : hwio;
    Run(conv.conv, conv.conv_scratchpad,
        {{DNNL_ARG_SRC, memory(g.Src(), Engine(), x.typed_data())},
                    {DNNL_ARG_DIFF_DST, memory(g.Dst(), Engine(), dy.typed_data())},
                    {DNNL_ARG_DIFF_WEIGHTS, out}});
    if (conv.reorder_needed) Run(conv.reorder, conv.reorder_scratchpad, {{DNNL_ARG_FROM, out}, {DNNL_ARG_TO, hwio}});
  });
}

}  // namespace

// Which oneDNN implementation a pass of this geometry would run (e.g. "jit:avx2", "x64:gemm:jit"),
// without running it: pass 0 forward, 1 backward-data, 2 backward-weights; v = the 15 Geometry
// fields in order. Returns 0, or -1 when oneDNN has no implementation (the message in `out`).
extern "C" int ClassicCnnsConvImplementation(int pass, const int64_t* v, char* out, int out_len) {
  Geometry g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14]};
  std::string impl;
  int status = 0;
  try {
    impl = pass == 0 ? ForwardPd(g).impl_info_str()
                     : pass == 1 ? BackwardDataPd(g).impl_info_str() : BackwardWeightsPd(g).impl_info_str();
  } catch (const dnnl::error& e) {
    impl = e.what();
    status = -1;
  }
  std::snprintf(out, out_len, "%s", impl.c_str());
  return status;
}

#define CLASSIC_CNNS_CONV_BINDING                                                                  \
  ffi::Ffi::Bind()                                                                                 \
      .Arg<ffi::Buffer<ffi::F32>>()                                                                \
      .Arg<ffi::Buffer<ffi::F32>>()                                                                \
      .Ret<ffi::Buffer<ffi::F32>>()                                                                \
      .Attr<int64_t>("sh")                                                                         \
      .Attr<int64_t>("sw")                                                                         \
      .Attr<int64_t>("pt")                                                                         \
      .Attr<int64_t>("pb")                                                                         \
      .Attr<int64_t>("pl")                                                                         \
      .Attr<int64_t>("pr")

XLA_FFI_DEFINE_HANDLER_SYMBOL(ClassicCnnsConvForward, Forward, CLASSIC_CNNS_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(ClassicCnnsConvBackwardData, BackwardData, CLASSIC_CNNS_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(ClassicCnnsConvBackwardWeights, BackwardWeights, CLASSIC_CNNS_CONV_BINDING);
