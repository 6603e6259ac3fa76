// BandedDeformConv2d TensorRT plugin: the TensorRT side of the operator. The maths is in the shared
// CUDA kernels behind ../csrc/banded_deform_conv_api.h; nothing here touches a pixel.
#include "BandedDeformConv2dPlugin.h"

#include <algorithm>
#include <exception>
#include <limits>
#include <memory>
#include <sstream>
#include <utility>

#include "banded_deform_conv_api.h"

namespace bdinn {
namespace trt {

using namespace nvinfer1;
using Severity = ILogger::Severity;

// The plugin's identity and serialised fields: must equal plugins/trt_plugin.py (PLUGIN_NAME,
// PLUGIN_VERSION, PLUGIN_NAMESPACE, FIELDS, DEFAULT_FIELDS); tests/test_trt_plugin_build.py checks.
constexpr char kPluginName[] = "BandedDeformConv2d";
constexpr char kPluginVersion[] = "1";
constexpr char kPluginNamespace[] = "bdinn";
constexpr char const* kFieldNames[kNbFields] = {"kernel_h", "kernel_w", "dilation_h", "dilation_w"};
constexpr Attributes kFieldDefaults = {3, 5, 1, 1};

enum Field { kKernelH = 0, kKernelW = 1, kDilationH = 2, kDilationW = 3 };
enum Input { kX = 0, kGeometry = 1, kWeight = 2, kBias = 3 };

namespace {

constexpr int32_t kError = 1;  // non-zero return of a failed TensorRT callback

std::string describe(std::string const& layer) {
    return std::string(kPluginNamespace) + "::" + kPluginName + (layer.empty() ? "" : " '" + layer + "'");
}

void logError(std::string const& layer, std::string const& message) noexcept {
    try {
        log(Severity::kERROR, describe(layer) + ": " + message);
    } catch (...) {  // out of memory for the message: the callback's error code still says it
    }
}

void logException(std::string const& layer, char const* where, std::exception const& e) {
    logError(layer, std::string(where) + ": " + e.what());
}

bool validInputCount(int32_t nbInputs) { return nbInputs == 3 || nbInputs == 4; }

char const* dataTypeName(DataType type) {
    switch (type) {
    case DataType::kFLOAT: return "float32";
    case DataType::kHALF: return "float16";
    default: return "unsupported type";
    }
}

std::string shapeString(Dims const& d) {
    std::ostringstream s;
    s << '[';
    for (int32_t i = 0; i < d.nbDims; ++i) s << (i ? "," : "") << d.d[i];
    s << ']';
    return s.str();
}

// True when both extents are known and differ.
bool conflict(int64_t a, int64_t b) { return a >= 0 && b >= 0 && a != b; }

}  // namespace

// ---- Plugin -----------------------------------------------------------------------------------

BandedDeformConv2dPlugin::BandedDeformConv2dPlugin(std::string layerName, Attributes const& attributes)
    : mLayerName(std::move(layerName)), mAttributes(attributes) {
    std::ostringstream s;
    for (int32_t i = 0; i < kNbFields; ++i) s << (i ? " " : "") << kFieldNames[i] << '=' << mAttributes[i];
    mMetadata = s.str();
}

IPluginCapability* BandedDeformConv2dPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept {
    switch (type) {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* BandedDeformConv2dPlugin::clone() noexcept {
    try {
        return std::make_unique<BandedDeformConv2dPlugin>(*this).release();
    } catch (std::exception const& e) {
        logException(mLayerName, "clone", e);
    }
    return nullptr;
}

char const* BandedDeformConv2dPlugin::getPluginName() const noexcept { return kPluginName; }
char const* BandedDeformConv2dPlugin::getPluginVersion() const noexcept { return kPluginVersion; }
char const* BandedDeformConv2dPlugin::getPluginNamespace() const noexcept { return kPluginNamespace; }

int32_t BandedDeformConv2dPlugin::getNbOutputs() const noexcept { return 1; }

bool BandedDeformConv2dPlugin::checkShapes(Dims const* dims, int32_t nbInputs, char const* where) const {
    try {
        std::string problem;
        Dims const& x = dims[kX];
        Dims const& g = dims[kGeometry];
        Dims const& w = dims[kWeight];
        if (x.nbDims != 4 || g.nbDims != 4 || w.nbDims != 4 || (nbInputs == 4 && dims[kBias].nbDims != 1)) {
            problem = "expects x [N,C,H,W], geometry [N,4,H,W], weight [O,C,kh,kw] and an optional bias [O]";
        } else if (conflict(g.d[1], 4)) {
            problem = "geometry must have 4 channels (cos, sin, sx, sy)";
        } else if (conflict(g.d[0], x.d[0]) || conflict(g.d[2], x.d[2]) || conflict(g.d[3], x.d[3])) {
            problem = "geometry must match x in N, H and W";
        } else if (conflict(w.d[1], x.d[1])) {
            problem = "weight must have as many input channels as x";
        } else if (conflict(w.d[2], mAttributes[kKernelH]) || conflict(w.d[3], mAttributes[kKernelW])) {
            problem = "weight kernel does not match the attributes kernel_h=" +
                      std::to_string(mAttributes[kKernelH]) + ", kernel_w=" +
                      std::to_string(mAttributes[kKernelW]);
        } else if (nbInputs == 4 && conflict(dims[kBias].d[0], w.d[0])) {
            problem = "bias must have one value per output channel";
        }
        if (problem.empty()) return true;
        std::ostringstream s;
        s << where << ": " << problem << "; got x " << shapeString(x) << ", geometry " << shapeString(g)
          << ", weight " << shapeString(w);
        if (nbInputs == 4) s << ", bias " << shapeString(dims[kBias]);
        logError(mLayerName, s.str());
    } catch (std::exception const& e) {
        logException(mLayerName, where, e);
    }
    return false;
}

int32_t BandedDeformConv2dPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                                  DynamicPluginTensorDesc const* /*out*/,
                                                  int32_t nbOutputs) noexcept {
    if (in == nullptr || !validInputCount(nbInputs) || nbOutputs != 1) {
        logError(mLayerName, "configurePlugin: expects 3 or 4 inputs and 1 output");
        return kError;
    }
    Dims dims[4];
    for (int32_t i = 0; i < nbInputs; ++i) dims[i] = in[i].desc.dims;  // -1 where only bounds are known
    if (!checkShapes(dims, nbInputs, "configurePlugin")) return kError;
    Dims const& largest = in[kX].max;  // the profile's maximum x while an engine is built (-1: unknown)
    bool const known = largest.nbDims == 4 && *std::min_element(largest.d, largest.d + 4) >= 0;
    if (known &&
        !bdinn_extents_fit(largest.d[0], largest.d[1], largest.d[2], largest.d[3], mAttributes[kKernelH],
                           mAttributes[kKernelW], mAttributes[kDilationH], mAttributes[kDilationW])) {
        logError(mLayerName, "configurePlugin: x up to " + shapeString(largest) +
                                 " is beyond the kernels' 32-bit indices (N*H*W <= 2^31 - 129, H and W < "
                                 "2^24); build with a smaller maximum shape");
        return kError;
    }
    mNbInputs = nbInputs;
    return 0;
}

int32_t BandedDeformConv2dPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs,
                                                     DataType const* inputTypes,
                                                     int32_t nbInputs) const noexcept {
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || !validInputCount(nbInputs)) {
        logError(mLayerName, "getOutputDataTypes: expects 3 or 4 inputs and 1 output");
        return kError;
    }
    DataType const type = inputTypes[kX];
    bool ok = type == DataType::kFLOAT || type == DataType::kHALF;
    for (int32_t i = 1; i < nbInputs; ++i) ok = ok && inputTypes[i] == type;
    if (!ok) {
        logError(mLayerName, "inputs must all be float32 or all float16 (x is " +
                                 std::string(dataTypeName(type)) + ")");
        return kError;
    }
    outputTypes[0] = type;
    return 0;
}

int32_t BandedDeformConv2dPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
                                                  DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/,
                                                  DimsExprs* outputs, int32_t nbOutputs,
                                                  IExprBuilder& /*exprBuilder*/) noexcept {
    if (inputs == nullptr || outputs == nullptr || !validInputCount(nbInputs) || nbOutputs != 1) {
        logError(mLayerName, "getOutputShapes: expects 3 or 4 inputs and 1 output");
        return kError;
    }
    // Check what is already constant; the rest is checked once configurePlugin() sees bounds.
    Dims dims[4];
    for (int32_t i = 0; i < nbInputs; ++i) {
        dims[i].nbDims = inputs[i].nbDims;
        for (int32_t j = 0; j < inputs[i].nbDims && j < Dims::MAX_DIMS; ++j) {
            IDimensionExpr const* e = inputs[i].d[j];
            dims[i].d[j] = e != nullptr && e->isConstant() ? e->getConstantValue() : -1;
        }
    }
    if (!checkShapes(dims, nbInputs, "getOutputShapes")) return kError;
    DimsExprs const& x = inputs[kX];
    outputs[0].nbDims = 4;
    outputs[0].d[0] = x.d[0];                 // N
    outputs[0].d[1] = inputs[kWeight].d[0];   // O
    outputs[0].d[2] = x.d[2];                 // H
    outputs[0].d[3] = x.d[3];                 // W
    return 0;
}

bool BandedDeformConv2dPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut,
                                                         int32_t nbInputs, int32_t nbOutputs) noexcept {
    if (inOut == nullptr || !validInputCount(nbInputs) || nbOutputs != 1 || pos < 0 || pos >= nbInputs + 1) {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR) return false;
    if (pos == 0) return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
    return desc.type == inOut[0].desc.type;  // one dtype for every input and the output
}

size_t BandedDeformConv2dPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
                                                  DynamicPluginTensorDesc const* /*outputs*/,
                                                  int32_t /*nbOutputs*/) const noexcept {
    return 0;  // the kernels gather straight into shared memory: no im2col buffer
}

char const* BandedDeformConv2dPlugin::getMetadataString() noexcept { return mMetadata.c_str(); }

int32_t BandedDeformConv2dPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs,
                                                PluginTensorDesc const* out, int32_t nbOutputs) noexcept {
    if (in == nullptr || out == nullptr || !validInputCount(nbInputs) || nbOutputs != 1) {
        logError(mLayerName, "onShapeChange: expects 3 or 4 inputs and 1 output");
        return kError;
    }
    Dims dims[4];
    for (int32_t i = 0; i < nbInputs; ++i) dims[i] = in[i].dims;
    if (!checkShapes(dims, nbInputs, "onShapeChange")) return kError;
    for (int32_t i = 0; i < nbInputs; ++i) {
        for (int32_t j = 0; j < dims[i].nbDims; ++j) {
            if (dims[i].d[j] > std::numeric_limits<int32_t>::max()) {
                logError(mLayerName, "onShapeChange: extents beyond 2^31 - 1 are not supported");
                return kError;
            }
        }
    }
    mNbInputs = nbInputs;
    return 0;
}

int32_t BandedDeformConv2dPlugin::enqueue(PluginTensorDesc const* inputDesc,
                                          PluginTensorDesc const* /*outputDesc*/, void const* const* inputs,
                                          void* const* outputs, void* /*workspace*/,
                                          cudaStream_t stream) noexcept {
    if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr) {
        logError(mLayerName, "enqueue: no tensors");
        return kError;
    }
    if (!validInputCount(mNbInputs)) {
        logError(mLayerName, "enqueue before onShapeChange()");
        return kError;
    }
    Dims const& x = inputDesc[kX].dims;
    int64_t const o = inputDesc[kWeight].dims.d[0];
    if (x.d[0] == 0 || x.d[2] == 0 || x.d[3] == 0 || o == 0) return 0;  // an empty output: nothing to do
    int const dtype = inputDesc[kX].type == DataType::kHALF ? BDINN_DTYPE_FLOAT16 : BDINN_DTYPE_FLOAT32;
    void const* bias = mNbInputs == 4 ? inputs[kBias] : nullptr;
    // Extents fit in int: onShapeChange() checked them.
    int const status = bdinn_banded_deform_conv_forward(
        dtype, inputs[kX], inputs[kGeometry], inputs[kWeight], bias, outputs[0], int(x.d[0]), int(x.d[1]),
        int(x.d[2]), int(x.d[3]), int(o), mAttributes[kKernelH], mAttributes[kKernelW], mAttributes[kDilationH],
        mAttributes[kDilationW], stream);
    if (status != BDINN_SUCCESS) {
        try {
            logError(mLayerName, std::string("kernel failed: ") + bdinn_error_string(status));
        } catch (...) {
        }
    }
    return status;
}

IPluginV3* BandedDeformConv2dPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept {
    return clone();  // no per-context resources
}

PluginFieldCollection const* BandedDeformConv2dPlugin::getFieldsToSerialize() noexcept {
    for (int32_t i = 0; i < kNbFields; ++i) {
        mFields[i] = PluginField(kFieldNames[i], &mAttributes[i], PluginFieldType::kINT32, 1);
    }
    mFieldCollection.nbFields = kNbFields;
    mFieldCollection.fields = mFields.data();
    return &mFieldCollection;
}

// ---- Creator ----------------------------------------------------------------------------------

namespace {

// One integer from a field: INT32 as the plugin serialises it; the other integer widths from
// front ends that convert attributes by their own types.
bool readInteger(PluginField const& field, int64_t& value) {
    if (field.data == nullptr || field.length < 1) return false;
    switch (field.type) {
    case PluginFieldType::kINT32: value = *static_cast<int32_t const*>(field.data); return true;
    case PluginFieldType::kINT64: value = *static_cast<int64_t const*>(field.data); return true;
    case PluginFieldType::kINT16: value = *static_cast<int16_t const*>(field.data); return true;
    case PluginFieldType::kINT8: value = *static_cast<int8_t const*>(field.data); return true;
    default: return false;
    }
}

}  // namespace

BandedDeformConv2dCreator::BandedDeformConv2dCreator() {
    // The ONNX parser passes a node attribute on only if it is declared here.
    for (int32_t i = 0; i < kNbFields; ++i) {
        mFields[i] = PluginField(kFieldNames[i], nullptr, PluginFieldType::kINT32, 1);
    }
    mFieldCollection.nbFields = kNbFields;
    mFieldCollection.fields = mFields.data();
}

IPluginV3* BandedDeformConv2dCreator::createPlugin(char const* name, PluginFieldCollection const* fc,
                                                   TensorRTPhase /*phase*/) noexcept {
    std::string layer;
    try {
        layer = name != nullptr ? name : "";
        Attributes attributes = kFieldDefaults;
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
            PluginField const& field = fc->fields[i];
            std::string const fieldName = field.name != nullptr ? field.name : "";
            int32_t index = -1;
            for (int32_t k = 0; k < kNbFields; ++k) {
                if (fieldName == kFieldNames[k]) index = k;
            }
            if (index < 0) {
                log(Severity::kWARNING, describe(layer) + ": ignoring unknown field '" + fieldName + "'");
                continue;
            }
            int64_t value = 0;
            if (!readInteger(field, value)) {
                logError(layer, "field '" + fieldName + "' must be one integer");
                return nullptr;
            }
            if (value < 1 || value > std::numeric_limits<int32_t>::max()) {
                logError(layer, fieldName + " must be at least 1, got " + std::to_string(value));
                return nullptr;
            }
            attributes[index] = int32_t(value);
        }
        if (attributes[kKernelH] % 2 == 0 || attributes[kKernelW] % 2 == 0) {
            logError(layer, "kernel_h and kernel_w must be odd, got " + std::to_string(attributes[kKernelH]) +
                                "x" + std::to_string(attributes[kKernelW]));
            return nullptr;
        }
        if (!bdinn_extents_fit(1, 1, 1, 1, attributes[kKernelH], attributes[kKernelW], attributes[kDilationH],
                               attributes[kDilationW])) {  // else every enqueue of the engine fails
            logError(layer, "the kernel reaches beyond 2^24 pixels (kernel_h/2 * dilation_h + kernel_w/2 * "
                            "dilation_w), more than the kernels address");
            return nullptr;
        }
        return std::make_unique<BandedDeformConv2dPlugin>(layer, attributes).release();
    } catch (std::exception const& e) {
        logException(layer, "createPlugin", e);
    }
    return nullptr;
}

PluginFieldCollection const* BandedDeformConv2dCreator::getFieldNames() noexcept { return &mFieldCollection; }
char const* BandedDeformConv2dCreator::getPluginName() const noexcept { return kPluginName; }
char const* BandedDeformConv2dCreator::getPluginVersion() const noexcept { return kPluginVersion; }
char const* BandedDeformConv2dCreator::getPluginNamespace() const noexcept { return kPluginNamespace; }

BandedDeformConv2dCreator& creator() noexcept {
    static BandedDeformConv2dCreator instance;
    return instance;
}

}  // namespace trt
}  // namespace bdinn
