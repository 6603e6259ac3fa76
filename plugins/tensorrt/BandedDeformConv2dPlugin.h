// BandedDeformConv2d as a TensorRT IPluginV3 (bdinn::BandedDeformConv2d, version 1).
//
// A thin adapter: shape and type inference, attribute (de)serialisation, and an enqueue() that
// calls the C ABI of the shared CUDA kernels (../csrc/banded_deform_conv_api.h). Name, version,
// namespace and serialised fields are those of the Python plugin (../trt_plugin.py), so an engine
// built with either runs with the other.
#ifndef BDINN_TRT_BANDED_DEFORM_CONV_PLUGIN_H
#define BDINN_TRT_BANDED_DEFORM_CONV_PLUGIN_H

#include <NvInferRuntime.h>

#include <array>
#include <cstdint>
#include <string>

// The major version of the TensorRT these headers describe (TensorRT-RTX headers name it apart).
#ifndef BDINN_TRT_MAJOR
#if defined(TRT_MAJOR_RTX)
#define BDINN_TRT_MAJOR TRT_MAJOR_RTX
#else
#define BDINN_TRT_MAJOR NV_TENSORRT_MAJOR
#endif
#endif

namespace bdinn {
namespace trt {

// Attributes, in serialisation order: kernel_h, kernel_w, dilation_h, dilation_w.
constexpr int32_t kNbFields = 4;
using Attributes = std::array<int32_t, kNbFields>;

class BandedDeformConv2dPlugin final : public nvinfer1::IPluginV3,
                                       public nvinfer1::IPluginV3OneCore,
                                       public nvinfer1::IPluginV3OneBuild,
                                       public nvinfer1::IPluginV3OneRuntime {
public:
    BandedDeformConv2dPlugin(std::string layerName, Attributes const& attributes);
    BandedDeformConv2dPlugin(BandedDeformConv2dPlugin const&) = default;
    BandedDeformConv2dPlugin& operator=(BandedDeformConv2dPlugin const&) = delete;
    ~BandedDeformConv2dPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                               nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                            nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs,
                            nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                            nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* outputs,
                            int32_t nbOutputs) const noexcept override;
    char const* getMetadataString() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                    void const* const* inputs, void* const* outputs, void* workspace,
                    cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    // Checks ranks, the geometry's 4 channels, the weight's kernel against the attributes and
    // that extents which must agree do; a negative extent is unknown and matches anything.
    bool checkShapes(nvinfer1::Dims const* dims, int32_t nbInputs, char const* where) const;

    std::string mLayerName;
    Attributes mAttributes;
    std::string mMetadata;
    int32_t mNbInputs{0};  // 3 or 4 (with bias) once configurePlugin() or onShapeChange() has run
    std::array<nvinfer1::PluginField, kNbFields> mFields{};
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class BandedDeformConv2dCreator final : public nvinfer1::IPluginCreatorV3One {
public:
    BandedDeformConv2dCreator();
    ~BandedDeformConv2dCreator() override = default;

    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                      nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::array<nvinfer1::PluginField, kNbFields> mFields{};
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

// The library's one creator (plugin_library.cpp hands it to TensorRT).
BandedDeformConv2dCreator& creator() noexcept;

// Logs through the ILogger of the TensorRT that loaded the library (setLoggerFinder), falling
// back to stderr for warnings and errors when there is none or it is of another TensorRT ABI.
void log(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept;

}  // namespace trt
}  // namespace bdinn

#endif  // BDINN_TRT_BANDED_DEFORM_CONV_PLUGIN_H
