// WeightSet: the tensors of a checkpoint folder, from model.safetensors or from the shards
// listed in model.safetensors.index.json.
#include "model/arch.h"
#include "model/network-impl.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/stat.h>

namespace iris::model {

namespace {

// A real index is tens of KiB (about 100 bytes per tensor); the cap bounds the JSON tree built
// from it.
constexpr uint64_t kMaxIndexSize = 16u << 20;

bool is_file(const std::string& path)
{
    struct stat sb;
    return ::stat(path.c_str(), &sb) == 0 && S_ISREG(sb.st_mode);
}

std::string read_small_file(const std::string& path, uint64_t cap)
{
    struct stat sb;
    if (::stat(path.c_str(), &sb) != 0)
        throw Error(errno == ENOENT ? ErrorKind::not_found : ErrorKind::io,
                    "cannot open " + path + ": " + std::strerror(errno));
    if (static_cast<uint64_t>(sb.st_size) > cap)
        throw Error(ErrorKind::invalid_input, path + ": file is larger than the size limit");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorKind::io, "cannot open " + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error(ErrorKind::io, "cannot read " + path);
    return ss.str();
}

// A shard name must be a plain file name inside the folder.
bool valid_shard_name(const std::string& s)
{
    return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos
        && s.find('\\') == std::string::npos && s.find('\0') == std::string::npos;
}

// Parses JSON, rejecting duplicate keys in any object (nlohmann would silently keep one).
nlohmann::json parse_json_no_duplicates(const std::string& text, const std::string& origin)
{
    std::vector<std::set<std::string>> keys; // one set per open object
    std::string duplicate;
    auto cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
        using E = nlohmann::json::parse_event_t;
        if (depth > 64) throw Error(ErrorKind::invalid_input, origin + ": JSON nested too deeply");
        if (ev == E::object_start) {
            keys.emplace_back();
        } else if (ev == E::object_end) {
            if (!keys.empty()) keys.pop_back();
        } else if (ev == E::key && !keys.empty()) {
            const std::string& k = parsed.get_ref<const std::string&>();
            if (!keys.back().insert(k).second)
                throw Error(ErrorKind::invalid_input, origin + ": duplicate key \"" + k + "\"");
        }
        return true;
    };
    try {
        return nlohmann::json::parse(text, cb);
    } catch (const nlohmann::json::exception& e) {
        throw Error(ErrorKind::invalid_input, origin + ": invalid JSON: " + e.what());
    }
}

} // namespace

struct WeightSet::Impl
{
    std::string dir;
    std::vector<SafeTensors> shards;
    std::map<std::string, const TensorInfo*, std::less<>> by_name;
};

WeightSet::WeightSet() = default;
WeightSet::WeightSet(WeightSet&&) noexcept = default;
WeightSet& WeightSet::operator=(WeightSet&&) noexcept = default;
WeightSet::~WeightSet() = default;

WeightSet WeightSet::open_dir(const std::string& dir_in)
{
    std::string dir = dir_in;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    struct stat sb;
    if (::stat(dir.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode))
        throw Error(ErrorKind::not_found, "model folder " + dir + " does not exist");

    WeightSet ws;
    ws.impl_ = std::make_unique<Impl>();
    Impl& im = *ws.impl_;
    im.dir = dir;

    const std::string single = dir + "/model.safetensors";
    const std::string index_path = dir + "/model.safetensors.index.json";
    // Like transformers: a single model.safetensors wins over an index.
    if (is_file(single)) {
        im.shards.push_back(SafeTensors::open(single));
        for (const TensorInfo& t : im.shards.back().tensors()) im.by_name.emplace(t.name, &t);
        return ws;
    }
    if (!is_file(index_path))
        throw Error(ErrorKind::not_found,
                    "model folder " + dir
                        + " has neither model.safetensors nor "
                          "model.safetensors.index.json");

    nlohmann::json index
        = parse_json_no_duplicates(read_small_file(index_path, kMaxIndexSize), index_path);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
        throw Error(ErrorKind::invalid_input, index_path + ": weight_map must be an object");
    const nlohmann::json& weight_map = index["weight_map"];

    // Open each shard once, in name order.
    std::map<std::string, size_t> shard_index;
    for (const auto& [tensor, shard] : weight_map.items()) {
        if (!shard.is_string())
            throw Error(ErrorKind::invalid_input,
                        index_path + ": weight_map[\"" + tensor + "\"] must be a file name");
        const std::string& file = shard.get_ref<const std::string&>();
        if (!valid_shard_name(file))
            throw Error(ErrorKind::invalid_input,
                        index_path + ": weight_map[\"" + tensor + "\"] names \"" + file
                            + "\", which is not a file in the folder");
        shard_index.emplace(file, 0);
    }
    if (shard_index.empty())
        throw Error(ErrorKind::invalid_input, index_path + ": weight_map lists no tensors");
    im.shards.reserve(shard_index.size());
    for (auto& [file, idx] : shard_index) {
        std::string shard_path = dir + "/" + file;
        if (!is_file(shard_path))
            throw Error(ErrorKind::not_found,
                        index_path + ": shard " + file + " is missing from " + dir);
        idx = im.shards.size();
        im.shards.push_back(SafeTensors::open(shard_path));
    }

    // Every tensor of every shard, each exactly once.
    for (const SafeTensors& st : im.shards) {
        for (const TensorInfo& t : st.tensors()) {
            auto [it, inserted] = im.by_name.emplace(t.name, &t);
            if (!inserted)
                throw Error(ErrorKind::invalid_input,
                            dir + ": tensor \"" + t.name + "\" is stored in more than one shard");
        }
    }
    // Every tensor the index lists must be in the shard it names.
    for (const auto& [tensor, shard] : weight_map.items()) {
        const std::string& file = shard.get_ref<const std::string&>();
        const SafeTensors& st = im.shards[shard_index.at(file)];
        if (!st.find(tensor))
            throw Error(ErrorKind::invalid_input,
                        index_path + ": tensor \"" + tensor + "\" is listed in shard " + file
                            + " but is not in it");
    }
    return ws;
}

const TensorInfo* WeightSet::find(std::string_view name) const
{
    auto it = impl_->by_name.find(name);
    return it == impl_->by_name.end() ? nullptr : it->second;
}

const TensorInfo& WeightSet::get(std::string_view name) const
{
    if (const TensorInfo* t = find(name)) return *t;
    throw Error(ErrorKind::not_found,
                impl_->dir + ": the weights have no tensor named \"" + std::string(name) + "\"");
}

std::vector<std::string> WeightSet::names() const
{
    std::vector<std::string> out;
    out.reserve(impl_->by_name.size());
    for (const auto& [name, t] : impl_->by_name) out.push_back(name);
    return out;
}

// ---------------------------------------------------------------------------------------------
// The tensors of a checkpoint and of llama.cpp's files by GGUF name

TensorSource TensorSource::from_checkpoint(const WeightSet& weights, const ModelConfig& config,
                                           std::string origin)
{
    TensorSource s;
    s.origin_ = std::move(origin);
    auto add = [&](std::span<const TensorName> table, int n_layers) {
        for (const TensorName& n : table) {
            const bool per_layer = std::strstr(n.gguf, "%d") != nullptr;
            for (int l = 0; l < (per_layer ? n_layers : 1); ++l) {
                std::string name = layer_name(n.gguf, l), hf = layer_name(n.hf, l);
                if (const TensorInfo* t = weights.find(hf)) {
                    std::optional<cpu::WeightType> type;
                    if (t->dtype == DType::f32) type = cpu::WeightType::f32;
                    if (t->dtype == DType::f16) type = cpu::WeightType::f16;
                    if (t->dtype == DType::bf16) type = cpu::WeightType::bf16;
                    s.tensors_.emplace(name,
                                       SourceTensor {hf, t->shape, type, dtype_name(t->dtype),
                                                     t->data, t->nbytes});
                }
                s.hf_names_.emplace(std::move(name), std::move(hf));
            }
        }
    };
    add(llm_arch(config.llm.arch).tensors, config.llm.num_hidden_layers);
    add(vision_tensor_names(), config.vision.num_hidden_layers);
    return s;
}

TensorSource TensorSource::from_gguf(const GgufFile& llm, const GgufFile& mmproj)
{
    TensorSource s;
    s.origin_ = llm.path();
    s.mmproj_origin_ = mmproj.path();
    s.gguf_ = true;
    for (const GgufFile* f : {&llm, &mmproj})
        for (const GgufTensor& t : f->tensors()) {
            auto [it, fresh]
                = s.tensors_.emplace(t.name,
                                     SourceTensor {t.name, t.shape(), t.type,
                                                   ggml_type_name(t.ggml_type), t.data, t.nbytes});
            if (!fresh)
                throw Error(ErrorKind::invalid_input,
                            "tensor " + t.name + " is in both " + llm.path() + " and "
                                + mmproj.path());
        }
    return s;
}

const SourceTensor* TensorSource::find(std::string_view name) const
{
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

std::string TensorSource::describe(const std::string& name) const
{
    if (!gguf_) {
        auto it = hf_names_.find(name);
        return origin_ + ": tensor " + (it == hf_names_.end() ? name : it->second);
    }
    // The clip's tensors ("v.", "mm.") belong in the mmproj.
    const bool vision = name.starts_with("v.") || name.starts_with("mm.");
    return (vision ? mmproj_origin_ : origin_) + ": tensor " + name;
}

InternVL::FileWeights TensorSource::stats() const
{
    InternVL::FileWeights s;
    std::map<std::string, uint64_t> by_type;
    for (const auto& [name, t] : tensors_) {
        s.params += t.numel();
        s.bytes += t.nbytes;
        by_type[t.type_name] += t.nbytes;
    }
    std::vector<std::pair<uint64_t, std::string>> order; // most bytes first
    for (const auto& [type, b] : by_type) order.emplace_back(b, type);
    std::sort(order.rbegin(), order.rend());
    for (const auto& [b, type] : order) s.types += (s.types.empty() ? "" : "+") + type;
    return s;
}

size_t TensorSource::total_bytes() const
{
    size_t n = 0;
    for (const auto& [name, t] : tensors_) n += t.nbytes;
    return n;
}

} // namespace iris::model
