// Entry points of libbdinn_trt_plugin.so (the only symbols it exports, see exports.map):
//
//   getCreators / setLoggerFinder  TensorRT's plugin-library interface: IPluginRegistry::loadLibrary,
//                                  trtexec --dynamicPlugins, plugins serialised into a plan.
//   a load-time registration       for hosts that only dlopen() the library (trtexec --staticPlugins),
//                                  made when the process has the TensorRT these headers describe.
//
// The library links no TensorRT library: TensorRT calls in through the interfaces it hands over,
// and the load-time registration finds TensorRT in the process with dlsym().
#include <dlfcn.h>

#include <cstdio>
#include <mutex>

#include "BandedDeformConv2dPlugin.h"

using namespace nvinfer1;

namespace bdinn {
namespace trt {
namespace {

// The major version of the TensorRT library holding `address`, or -1 when it cannot be told.
int32_t majorVersionOfLibraryAt(void const* address) {
    Dl_info info{};
    if (dladdr(address, &info) == 0 || info.dli_fname == nullptr) return -1;
    void* library = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (library == nullptr) return -1;
    using GetMajor = int32_t (*)();
    auto getMajor = reinterpret_cast<GetMajor>(dlsym(library, "getInferLibMajorVersion"));
    int32_t const major = getMajor != nullptr ? getMajor() : -1;
    dlclose(library);
    return major;
}

class LoggerFinder {
public:
    void set(ILoggerFinder* finder) {
        std::lock_guard<std::mutex> lock(mMutex);
        if (finder == nullptr || mFinder != nullptr) return;
        // ILogger and ILoggerFinder changed their virtual tables between TensorRT 10 and 11: calling
        // a finder of another major version than these headers' would jump to the wrong method.
        // The finder's virtual table lies in the TensorRT library that loaded us; ask it.
        int32_t const major = majorVersionOfLibraryAt(*reinterpret_cast<void* const*>(finder));
        if (major >= 0 && major != BDINN_TRT_MAJOR) {
            std::fprintf(stderr,
                         "libbdinn_trt_plugin: built with headers of TensorRT major version %d but loaded by "
                         "major version %d; logging to stderr (rebuild against that TensorRT to log through it)\n",
                         int(BDINN_TRT_MAJOR), int(major));
            return;
        }
        mFinder = finder;
    }

    ILogger* logger() {
        std::lock_guard<std::mutex> lock(mMutex);
        return mFinder != nullptr ? mFinder->findLogger() : nullptr;
    }

private:
    std::mutex mMutex;
    ILoggerFinder* mFinder{nullptr};
};

LoggerFinder& loggerFinder() {
    static LoggerFinder instance;
    return instance;
}

// trtexec --staticPlugins (and any host that links TensorRT and dlopen()s this library) expects the
// creator to be registered at load time. IPluginRegistry's virtual table differs between major
// versions, so only a TensorRT of the headers' major version is used. IPluginRegistry::loadLibrary
// registers the creator itself (and deregisters it with the library): getCreators() hands over.
class LoadTimeRegistration {
public:
    LoadTimeRegistration() {
        using GetMajor = int32_t (*)();
        using GetRegistry = IPluginRegistry* (*)();
        auto getMajor = reinterpret_cast<GetMajor>(dlsym(RTLD_DEFAULT, "getInferLibMajorVersion"));
        auto getRegistry = reinterpret_cast<GetRegistry>(dlsym(RTLD_DEFAULT, "getPluginRegistry"));
        if (getMajor == nullptr || getRegistry == nullptr || getMajor() != BDINN_TRT_MAJOR) return;
        IPluginRegistry* registry = getRegistry();
        if (registry != nullptr && registry->registerCreator(creator(), creator().getPluginNamespace())) {
            mRegistry = registry;
        }
    }

    ~LoadTimeRegistration() { release(); }

    LoadTimeRegistration(LoadTimeRegistration const&) = delete;
    LoadTimeRegistration& operator=(LoadTimeRegistration const&) = delete;

    void release() {
        std::lock_guard<std::mutex> lock(mMutex);
        if (mRegistry != nullptr) mRegistry->deregisterCreator(creator());
        mRegistry = nullptr;
    }

private:
    std::mutex mMutex;
    IPluginRegistry* mRegistry{nullptr};
};

LoadTimeRegistration gLoadTimeRegistration;

}  // namespace

void log(ILogger::Severity severity, std::string const& message) noexcept {
    try {
        if (ILogger* logger = loggerFinder().logger()) {
            logger->log(severity, message.c_str());
        } else if (severity <= ILogger::Severity::kWARNING) {
            std::fprintf(stderr, "%s: %s\n", severity == ILogger::Severity::kWARNING ? "WARNING" : "ERROR",
                         message.c_str());
        }
    } catch (...) {
    }
}

}  // namespace trt
}  // namespace bdinn

// TensorRT's own TENSORRTAPI is empty outside TensorRT's build; the library builds with hidden
// visibility, so the entry points say so themselves (exports.map then keeps only them).
#define BDINN_TRT_ENTRY_POINT extern "C" __attribute__((visibility("default")))

BDINN_TRT_ENTRY_POINT IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    bdinn::trt::gLoadTimeRegistration.release();
    static IPluginCreatorInterface* const creators[] = {&bdinn::trt::creator()};
    nbCreators = 1;
    return creators;
}

BDINN_TRT_ENTRY_POINT void setLoggerFinder(ILoggerFinder* finder) { bdinn::trt::loggerFinder().set(finder); }
