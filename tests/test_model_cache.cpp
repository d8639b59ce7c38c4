// ModelCache: keys, LRU eviction under a byte budget, models that outlive their eviction while in
// use, concurrent gets (one load per key, errors to every waiter) and the engine's use of it.
// The concurrency tests also run under ThreadSanitizer (make test-tsan).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <latch>
#include <map>
#include <random>
#include <thread>

#include "bitnet/model_cache.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

namespace fs = std::filesystem;

// Copies of the tiny reference models in a temporary directory, so a test can have as many
// distinct models as it needs and may change their files.
class ModelCacheTest : public testing::Test {
  protected:
    void SetUp() override {
        static std::atomic<int> counter{0};
        dir_ = fs::path(testing::TempDir()) / ("bitnet_cache_test_" + std::to_string(::getpid()) +
                                               "_" + std::to_string(counter++));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    // A copy of tests/data/<source> named `name`, without the reference files.
    std::string copy_model(const std::string& name, const std::string& source = "tiny-packed") {
        const fs::path to = dir_ / name;
        fs::create_directories(to);
        for (const char* f : {"config.json", "model.safetensors"})
            fs::copy_file(fs::path(model_dir(source)) / f, to / f);
        return to.string();
    }

    static size_t bytes_of(const std::string& path) {
        return Model::load(path)->info().engine_bytes;
    }

    fs::path dir_;
};

// Polls `done` until it holds; fails the test after a minute instead of hanging CI.
template <typename F>
bool eventually(F&& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

TEST_F(ModelCacheTest, SecondGetIsAHitWithTheSameInstance) {
    ModelCache cache(size_t{1} << 30);
    const std::string path = model_dir("tiny-packed");
    const auto a = cache.get(path);
    const auto b = cache.get(path);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a.get(), b.get());
    const ModelCache::Stats s = cache.stats();
    EXPECT_EQ(s.misses, 1u);
    EXPECT_EQ(s.hits, 1u);
    EXPECT_EQ(s.evictions, 0u);
    EXPECT_EQ(s.entries, 1u);
    EXPECT_GT(a->info().engine_bytes, 0u);
    EXPECT_EQ(s.resident_bytes, a->info().engine_bytes);
    EXPECT_EQ(s.live_models, 1u);
    EXPECT_EQ(s.budget_bytes, size_t{1} << 30);
}

TEST_F(ModelCacheTest, EverySpellingOfThePathIsOneEntry) {
    ModelCache cache(size_t{1} << 30);
    const std::string abs = fs::absolute(model_dir("tiny-packed")).lexically_normal().string();
    const std::string rel = fs::relative(abs, fs::current_path()).string();
    const std::vector<std::string> spellings = {
        abs, abs + "/",  abs + "//", abs + "/./", abs + "/../tiny-packed",
        rel, "./" + rel, rel + "/",
    };
    const auto first = cache.get(spellings.front());
    for (const std::string& p : spellings) EXPECT_EQ(cache.get(p).get(), first.get()) << p;

    // A symbolic link to the directory is the same model too.
    const fs::path link = dir_ / "link";
    fs::create_directory_symlink(abs, link);
    EXPECT_EQ(cache.get(link.string()).get(), first.get());

    EXPECT_EQ(cache.stats().misses, 1u);
    EXPECT_EQ(cache.stats().entries, 1u);
}

TEST_F(ModelCacheTest, DifferentModelsAndOptionsAreDifferentEntries) {
    ModelCache cache(size_t{1} << 30);
    const auto packed = cache.get(model_dir("tiny-packed"));
    const auto master = cache.get(model_dir("tiny-master"));
    const auto packed_cpu = cache.get(model_dir("tiny-packed"), LoadOptions{Device::CPU});
    EXPECT_NE(packed.get(), master.get());
    EXPECT_NE(packed.get(), packed_cpu.get());
    EXPECT_EQ(cache.get(model_dir("tiny-packed"), LoadOptions{Device::CPU}).get(),
              packed_cpu.get());
    EXPECT_EQ(cache.get(model_dir("tiny-packed"), LoadOptions{Device::Auto}).get(), packed.get());
    const ModelCache::Stats s = cache.stats();
    EXPECT_EQ(s.misses, 3u);
    EXPECT_EQ(s.hits, 2u);
    EXPECT_EQ(s.entries, 3u);
    EXPECT_EQ(s.resident_bytes, packed->info().engine_bytes + master->info().engine_bytes +
                                    packed_cpu->info().engine_bytes);
}

TEST_F(ModelCacheTest, EvictsTheLeastRecentlyUsedBeyondTheBudget) {
    const std::string a = copy_model("a"), b = copy_model("b"), c = copy_model("c");
    const size_t size = bytes_of(a);
    ModelCache cache(2 * size);  // room for two
    std::weak_ptr<const Model> b_weak;
    {
        cache.get(a);
        b_weak = cache.get(b);
        cache.get(a);  // a is now more recent than b
        cache.get(c);  // evicts b
    }
    ModelCache::Stats s = cache.stats();
    EXPECT_EQ(s.evictions, 1u);
    EXPECT_EQ(s.entries, 2u);
    EXPECT_EQ(s.resident_bytes, 2 * size);
    EXPECT_TRUE(b_weak.expired()) << "nobody used b, so evicting it must free it";

    cache.get(a);  // hit; c is now the oldest
    EXPECT_EQ(cache.stats().misses, 3u);
    cache.get(b);  // loads b again and evicts c
    s = cache.stats();
    EXPECT_EQ(s.misses, 4u);
    EXPECT_EQ(s.evictions, 2u);
    cache.get(a);  // still cached
    cache.get(c);  // was evicted: loaded again
    s = cache.stats();
    EXPECT_EQ(s.misses, 5u);
    EXPECT_EQ(s.hits, 3u);
    EXPECT_EQ(s.entries, 2u);
    EXPECT_LE(s.resident_bytes, s.budget_bytes);

    cache.set_budget(size);  // evicts at once, down to one model: the most recent (c)
    s = cache.stats();
    EXPECT_EQ(s.entries, 1u);
    EXPECT_EQ(s.resident_bytes, size);
    EXPECT_EQ(s.evictions, 4u);
    EXPECT_EQ(cache.budget(), size);
    cache.get(c);
    EXPECT_EQ(cache.stats().misses, 5u);

    cache.clear();
    s = cache.stats();
    EXPECT_EQ(s.entries, 0u);
    EXPECT_EQ(s.resident_bytes, 0u);
    EXPECT_EQ(s.live_models, 0u);
    EXPECT_EQ(s.evictions, 4u) << "clear() is not counted as eviction";
}

TEST_F(ModelCacheTest, AModelLargerThanTheBudgetIsReturnedButNotKept) {
    ModelCache cache(1);
    std::weak_ptr<const Model> weak;
    {
        const auto m = cache.get(model_dir("tiny-packed"));
        weak = m;
        EXPECT_EQ(cache.stats().entries, 0u);
        EXPECT_EQ(cache.stats().live_models, 1u);
        // While it is in use a second get finds the same instance rather than loading again.
        EXPECT_EQ(cache.get(model_dir("tiny-packed")).get(), m.get());
        EXPECT_EQ(cache.stats().misses, 1u);
    }
    EXPECT_TRUE(weak.expired());
    EXPECT_EQ(cache.stats().live_models, 0u);
    cache.get(model_dir("tiny-packed"));
    EXPECT_EQ(cache.stats().misses, 2u);
}

TEST_F(ModelCacheTest, AModelInUseSurvivesEvictionAndIsFoundAgain) {
    ModelCache cache(size_t{1} << 30);
    const auto engine = InferenceEngine::builder()
                            .threads(1)
                            .model_cache(std::shared_ptr<ModelCache>(&cache, [](ModelCache*) {}))
                            .build();
    const std::vector<int32_t> ids = {509, 46, 77, 390, 397, 79, 300, 302};
    auto model = engine->load_model(model_dir("tiny-packed"));
    const Tensor before = engine->infer(*model, {ids}).logits[0];
    cache.clear();
    EXPECT_EQ(cache.stats().entries, 0u);
    EXPECT_EQ(cache.stats().live_models, 1u);
    const Tensor after = engine->infer(*model, {ids}).logits[0];
    EXPECT_EQ(rel_l2(after.data_as<float>(), before.data_as<float>(), before.numel()), 0.0);

    const auto again = engine->load_model(model_dir("tiny-packed"));
    EXPECT_EQ(again.get(), model.get()) << "loading a model in use must not map it twice";
    EXPECT_EQ(cache.stats().misses, 1u);
    EXPECT_EQ(cache.stats().entries, 1u) << "found again, it is cached again";
}

// A session decodes on one thread while another thread evicts, clears and loads other models:
// the session's model must stay alive (ASan would see a use after free) and its logits must not
// change.
TEST_F(ModelCacheTest, SessionKeepsRunningWhileAnotherThreadEvicts) {
    auto cache = std::make_shared<ModelCache>(size_t{1} << 30);
    const auto engine = InferenceEngine::builder().threads(2).model_cache(cache).build();
    const std::string other = copy_model("other", "tiny-master");
    std::vector<int32_t> tokens(48);
    std::mt19937 rng(7);
    for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % 509);

    const int capacity = static_cast<int>(tokens.size());
    std::weak_ptr<const Model> weak;
    std::unique_ptr<Session> session;
    std::vector<Tensor> expected;
    {
        const auto model = engine->load_model(model_dir("tiny-packed"));
        weak = model;
        const auto first_run = engine->create_session(model, capacity);
        for (int32_t& t : tokens) expected.push_back(engine->forward(*first_run, std::span(&t, 1)));
        session = engine->create_session(model, capacity);
    }
    std::atomic<int> rounds{0};
    std::atomic<bool> decoding{true};
    std::thread evictor([&] {
        for (int round = 0; decoding.load(); ++round) {
            cache->clear();
            cache->set_budget(round % 2 ? 0 : size_t{1} << 30);
            cache->get(other);
            cache->get(model_dir("tiny-packed"));
            ++rounds;
        }
    });
    const int V = session->model().config().vocab_size;
    double worst = 0;
    bool overlapped = true;
    for (size_t i = 0; i < tokens.size(); ++i) {
        // Steps interleave with eviction rounds however the threads are scheduled.
        overlapped = overlapped && eventually([&] { return rounds.load() > int(i / 4); });
        const Tensor logits = engine->forward(*session, std::span(&tokens[i], 1));
        worst = std::max(worst, rel_l2(logits.data_as<float>(), expected[i].data_as<float>(),
                                       static_cast<size_t>(V)));
    }
    decoding = false;
    evictor.join();
    EXPECT_TRUE(overlapped);
    EXPECT_EQ(worst, 0.0);
    EXPECT_GT(cache->stats().misses, 2u);

    cache->clear();
    EXPECT_FALSE(weak.expired()) << "the session still holds the model";
    session.reset();
    EXPECT_TRUE(weak.expired()) << "the last user gone and the cache cleared, it must be freed";
}

TEST_F(ModelCacheTest, EightThreadsHammeringTwoModelsLoadEachOnce) {
    ModelCache cache(size_t{1} << 30);
    const std::vector<std::string> paths = {model_dir("tiny-packed"),
                                            model_dir("tiny-master") + "/"};
    constexpr int kThreads = 8, kGets = 60;
    std::vector<std::vector<const Model*>> seen(kThreads, std::vector<const Model*>(2, nullptr));
    std::vector<int> disagreements(kThreads, 0);
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(t) + 1);
            start.arrive_and_wait();
            for (int i = 0; i < kGets; ++i) {
                const size_t which = rng() % 2;
                const auto m = cache.get(paths[which]);
                if (seen[t][which] == nullptr) seen[t][which] = m.get();
                disagreements[t] += seen[t][which] != m.get();
            }
        });
    }
    for (std::thread& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) {
        EXPECT_EQ(disagreements[t], 0) << "thread " << t;
        for (size_t which = 0; which < 2; ++which) {
            if (seen[t][which] && seen[0][which]) {
                EXPECT_EQ(seen[t][which], seen[0][which]);
            }
        }
    }
    const ModelCache::Stats s = cache.stats();
    EXPECT_EQ(s.misses, 2u);
    EXPECT_EQ(s.hits, static_cast<uint64_t>(kThreads * kGets) - 2);
    EXPECT_EQ(s.entries, 2u);
    EXPECT_EQ(s.waiting, 0u);
}

// The same hammering with room for only one model: constant eviction and reloading, and every
// caller still gets a whole model of the path it asked for.
TEST_F(ModelCacheTest, EightThreadsUnderATightBudget) {
    const std::string a = copy_model("a", "tiny-packed"), b = copy_model("b", "tiny-master");
    const size_t room_for_one = std::max(bytes_of(a), bytes_of(b));
    const int layers_a = Model::load(a)->config().num_layers;
    const int layers_b = Model::load(b)->config().num_layers;
    ASSERT_NE(layers_a, layers_b);
    ModelCache cache(room_for_one);
    constexpr int kThreads = 8, kGets = 40;
    std::atomic<int> wrong{0};
    std::latch start(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(t) + 100);
            start.arrive_and_wait();
            for (int i = 0; i < kGets; ++i) {
                const bool want_a = rng() % 2 == 0;
                const std::string& path = want_a ? a : b;
                const auto m = cache.get(path);
                wrong += m->info().path != path ||
                         m->config().num_layers != (want_a ? layers_a : layers_b);
                if (t == 0 && i % 8 == 0) cache.set_budget(i % 16 ? 0 : room_for_one);
            }
        });
    }
    for (std::thread& th : threads) th.join();
    EXPECT_EQ(wrong.load(), 0);
    const ModelCache::Stats s = cache.stats();
    EXPECT_EQ(s.hits + s.misses, static_cast<uint64_t>(kThreads * kGets));
    EXPECT_LE(s.resident_bytes, s.budget_bytes);
    EXPECT_EQ(s.load_failures, 0u);
}

// A load blocked on a FIFO standing in for config.json: the other callers of the same key wait
// for it, all receive its error, and the failure is not cached.
TEST_F(ModelCacheTest, ALoadErrorReachesEveryWaiterAndIsNotCached) {
    const std::string path = copy_model("blocked");
    const fs::path config = fs::path(path) / "config.json";
    const std::string good_config = [&] {
        std::ifstream in(config);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }();
    fs::remove(config);
    ASSERT_EQ(::mkfifo(config.c_str(), 0600), 0);
    // Whatever happens, release a reader blocked on the FIFO so the test cannot hang.
    struct Unblock {
        fs::path fifo;
        void operator()() const {
            const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
            if (fd >= 0) ::close(fd);
        }
    } unblock{config};

    ModelCache cache(size_t{1} << 30);
    constexpr int kWaiters = 7;
    std::vector<std::string> errors(kWaiters + 1);
    std::vector<ErrorCode> codes(kWaiters + 1, ErrorCode::Internal);
    auto call = [&](int i) {
        try {
            cache.get(path);
            errors[i] = "no error";
        } catch (const Error& e) {
            errors[i] = e.what();
            codes[i] = e.code();
        }
    };
    std::vector<std::thread> threads;
    threads.emplace_back(call, 0);
    const bool loading = eventually([&] { return cache.stats().misses == 1; });
    if (loading) {
        for (int i = 1; i <= kWaiters; ++i) threads.emplace_back(call, i);
        EXPECT_TRUE(eventually([&] { return cache.stats().waiting == size_t{kWaiters}; }));
        {
            std::ofstream fifo(config);  // unblocks the loader
            fifo << "{ not json";
        }
    }
    unblock();
    for (std::thread& th : threads) th.join();
    ASSERT_TRUE(loading);

    for (int i = 0; i <= kWaiters; ++i) {
        EXPECT_EQ(codes[i], ErrorCode::ParseError) << "caller " << i << ": " << errors[i];
        EXPECT_NE(errors[i].find("config.json"), std::string::npos) << errors[i];
        EXPECT_EQ(errors[i], errors[0]);
    }
    ModelCache::Stats s = cache.stats();
    EXPECT_EQ(s.misses, 1u);
    EXPECT_EQ(s.load_failures, 1u);
    EXPECT_EQ(s.hits, 0u);
    EXPECT_EQ(s.entries, 0u);
    EXPECT_EQ(s.waiting, 0u);

    // Repaired, the same key loads: the error was not remembered.
    fs::remove(config);
    std::ofstream(config) << good_config;
    EXPECT_NE(cache.get(path), nullptr);
    s = cache.stats();
    EXPECT_EQ(s.misses, 2u);
    EXPECT_EQ(s.entries, 1u);
}

TEST_F(ModelCacheTest, MissingModelIsAnErrorEveryTime) {
    ModelCache cache(size_t{1} << 30);
    const std::string missing = (dir_ / "no-such-model").string();
    for (int i = 0; i < 2; ++i) {
        EXPECT_TRUE(
            throws_error([&] { cache.get(missing); }, ErrorCode::NotFound, {"no-such-model"}));
    }
    EXPECT_EQ(cache.stats().load_failures, 2u);
    EXPECT_EQ(cache.stats().entries, 0u);
}

TEST_F(ModelCacheTest, ModelRewrittenOnDiskIsLoadedAgain) {
    const std::string path = copy_model("rewritten");
    ModelCache cache(size_t{1} << 30);
    const auto first = cache.get(path);
    EXPECT_EQ(cache.get(path).get(), first.get());
    {
        std::ofstream(fs::path(path) / "config.json", std::ios::app) << "\n\n";  // new size
    }
    const auto second = cache.get(path);
    EXPECT_NE(second.get(), first.get());
    EXPECT_EQ(cache.stats().misses, 2u);
    EXPECT_EQ(cache.get(path).get(), second.get());
}

TEST_F(ModelCacheTest, EnginesShareTheirCache) {
    auto cache = std::make_shared<ModelCache>(size_t{1} << 30);
    const auto one = InferenceEngine::builder().threads(1).model_cache(cache).build();
    const auto two = InferenceEngine::builder().threads(1).model_cache(cache).build();
    EXPECT_EQ(&one->model_cache(), cache.get());
    const auto a = one->load_model(model_dir("tiny-packed"));
    const auto b = two->load_model(model_dir("tiny-packed") + "/");
    EXPECT_EQ(a.get(), b.get());
    EXPECT_EQ(cache->stats().misses, 1u);

    // The builder's budget applies to the engine's cache.
    InferenceEngine::builder().threads(1).model_cache(cache).model_cache_budget(1).build();
    EXPECT_EQ(cache->budget(), 1u);
    EXPECT_EQ(cache->stats().entries, 0u);

    // By default an engine uses the process-wide cache.
    InferenceEngine plain(EngineOptions{.threads = 1});
    EXPECT_EQ(&plain.model_cache(), ModelCache::global().get());
    EXPECT_GT(ModelCache::global()->budget(), 0u);
}

}  // namespace
}  // namespace bitnet::test
