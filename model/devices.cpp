// The devices the network can run on, and the backend of each (LoadOptions::device).
#include "model/backend.h"
#if IRIS_HAVE_CUDA
#include "model/cuda/backend-cuda.h"
#endif

#include <charconv>
#include <cstdlib>

namespace iris::model {

std::vector<Backend*> available_backends()
{
    std::vector<Backend*> all {&cpu_backend()};
#if IRIS_HAVE_CUDA
    for (int i = 0; i < cuda_device_count(); ++i) all.push_back(&cuda_backend(i));
#endif
    return all;
}

std::vector<std::string> available_devices()
{
    std::vector<std::string> names;
    for (Backend* b : available_backends()) names.emplace_back(b->name());
    return names;
}

Backend& device_backend(std::string_view device)
{
    if (device.empty()) {
        const char* env = std::getenv("IRIS_DEVICE");
        device = env && *env ? env : "cpu";
    }
    if (device == "cpu") return cpu_backend();
    const auto there = [] {
        std::string list;
        for (const std::string& name : available_devices())
            list += (list.empty() ? "" : ", ") + name;
        return list;
    };
    int index = 0;
    if (device != "cuda") {
        const std::string_view n = device.starts_with("cuda:") ? device.substr(5) : "";
        const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), index);
        if (n.empty() || ec != std::errc() || end != n.data() + n.size() || index < 0)
            throw Error(ErrorKind::invalid_argument,
                        strfmt("unknown device '%.*s': say cpu, cuda or cuda:N (this machine has "
                               "%s)",
                               int(device.size()), device.data(), there().c_str()));
    }
#if IRIS_HAVE_CUDA
    if (index < cuda_device_count()) return cuda_backend(index);
    throw Error(ErrorKind::not_found,
                strfmt("device 'cuda:%d' not found: this machine has %s", index, there().c_str()));
#else
    throw Error(ErrorKind::unsupported,
                strfmt("device '%.*s': this build has no CUDA backend (nvcc was not found when it "
                       "was configured; see IRIS_CUDA)",
                       int(device.size()), device.data()));
#endif
}

} // namespace iris::model
