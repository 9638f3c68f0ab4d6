// Retriever: BM25 text search, embedding similarity, their fusion, time filters, thresholds,
// and user text that looks like FTS5 syntax.
#include "memory_test_util.h"

using iris::Error;
using iris::ErrorKind;
using namespace iris::memory;
using iris::test::embedding_near;
using iris::test::make_entry;
using iris::test::TempDir;

namespace {

constexpr int kDim = 32;

class MemoryRetrieval : public ::testing::Test
{
protected:
    void SetUp() override
    {
        // Five clips 100 s apart, each with its own embedding axis.
        const char* captions[] = {
            "a red bicycle leaning against the garden wall",
            "a cat sleeping on the sofa",
            "keys on the kitchen table next to a bicycle helmet",
            "a man reading a newspaper",
            "the cat is playing with a ball of wool",
        };
        for (int i = 0; i < 5; ++i)
            ids.push_back(store.add(make_entry(1000 + 100 * i, captions[i],
                                               embedding_near(kDim, i, uint32_t(i)), 1,
                                               i == 3 ? "where did I put my umbrella" : "")));
    }
    int64_t t(int i) const { return (1000 + 100 * i) * int64_t(1'000'000); } // start of clip i

    TempDir dir;
    Store store = Store::open(dir.path(), {.dim = kDim});
    Retriever retriever {store};
    std::vector<int64_t> ids;
};

} // namespace

TEST_F(MemoryRetrieval, TextSearchFindsACaptionWord)
{
    auto hits = retriever.search({.text = "newspaper"});
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].entry.id, ids[3]);
    EXPECT_EQ(hits[0].rank_text, 1);
    EXPECT_EQ(hits[0].rank_vector, 0);
    EXPECT_TRUE(std::isnan(hits[0].similarity));
    EXPECT_EQ(hits[0].entry.key_frames.size(), 1u); // results carry their key frames
}

TEST_F(MemoryRetrieval, TextSearchCoversTranscriptsAndWordForms)
{
    auto hits = retriever.search({.text = "Umbrellas?"});
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].entry.id, ids[3]);
    hits = retriever.search({.text = "sleeps"}); // stemmed: matches "sleeping"
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].entry.id, ids[1]);
}

TEST_F(MemoryRetrieval, HybridSearchRanksTheNearestEmbeddingFirst)
{
    // "bicycle" matches clips 0 and 2 equally well in text; the embedding is clip 2's.
    auto hits
        = retriever.search({.text = "bicycle", .embedding = embedding_near(kDim, 2, 77), .k = 3});
    ASSERT_GE(hits.size(), 2u);
    EXPECT_EQ(hits[0].entry.id, ids[2]);
    EXPECT_EQ(hits[0].rank_vector, 1);
    EXPECT_GT(hits[0].rank_text, 0);
    EXPECT_GT(hits[0].similarity, 0.9f);
    EXPECT_EQ(hits[1].entry.id, ids[0]); // in the text list only, still above vector-only hits
    EXPECT_GE(hits[0].score, hits[1].score);
    EXPECT_NEAR(hits[0].score, 1.0 / (60 + hits[0].rank_vector) + 1.0 / (60 + hits[0].rank_text),
                1e-12);
}

TEST_F(MemoryRetrieval, VectorSearchAloneOrdersBySimilarity)
{
    auto hits = retriever.search({.embedding = embedding_near(kDim, 4, 5), .k = 5});
    ASSERT_EQ(hits.size(), 5u);
    EXPECT_EQ(hits[0].entry.id, ids[4]);
    for (size_t i = 1; i < hits.size(); ++i) EXPECT_GE(hits[i - 1].similarity, hits[i].similarity);
}

TEST_F(MemoryRetrieval, TimeFilterExcludesEntriesOutsideTheRange)
{
    // Only clips 2 and 3 overlap [t2, t3 + 1 s]; clip 1 ends at t1 + 5 s, before it.
    Query q {.text = "cat bicycle newspaper",
             .embedding = embedding_near(kDim, 1, 8),
             .k = 5,
             .t_from_us = t(2),
             .t_to_us = t(3) + 1'000'000};
    auto hits = retriever.search(q);
    ASSERT_EQ(hits.size(), 2u);
    for (const Hit& h : hits) EXPECT_TRUE(h.entry.id == ids[2] || h.entry.id == ids[3]);

    q.text.clear(); // vector only
    for (const Hit& h : retriever.search(q))
        EXPECT_TRUE(h.entry.id == ids[2] || h.entry.id == ids[3]);
    q.text = "cat"; // text only, no match in range
    q.embedding.clear();
    EXPECT_TRUE(retriever.search(q).empty());
    // A range that touches a clip's last microsecond includes it.
    auto edge
        = retriever.search({.text = "cat", .t_from_us = t(1) + 5'000'000, .t_to_us = t(2) - 1});
    ASSERT_EQ(edge.size(), 1u);
    EXPECT_EQ(edge[0].entry.id, ids[1]);
}

TEST_F(MemoryRetrieval, SimilarityThresholdDropsDistantEntries)
{
    auto hits = retriever.search(
        {.text = "cat", .embedding = embedding_near(kDim, 4, 3), .k = 5, .min_similarity = 0.8f});
    // Clip 1 matches "cat" but its embedding is orthogonal to the query: it is left out.
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].entry.id, ids[4]);
}

TEST_F(MemoryRetrieval, QueryWithNothingToRankReturnsTheNewestInRange)
{
    auto hits = retriever.search({.text = "what is the", .k = 2, .t_to_us = t(3)});
    ASSERT_EQ(hits.size(), 2u);
    EXPECT_EQ(hits[0].entry.id, ids[3]);
    EXPECT_EQ(hits[1].entry.id, ids[2]);
}

TEST_F(MemoryRetrieval, UserTextIsNeverParsedAsFts5Syntax)
{
    const char* hostile[] = {
        "\"bicycle",
        "NEAR(",
        "bicycle NEAR(cat, 2)",
        "AND OR NOT",
        "caption: bicycle",
        "transcript:umbrella*",
        "^bicycle",
        "bicycle\" OR \"",
        "'); DROP TABLE entries; --",
        "(((((",
        "*",
        "{caption transcript}: cat",
        "c\xC3\xA4t \xE2\x80\x9C"
        "bicycle\xE2\x80\x9D",
        "bi\xFF\xFE"
        "cycle",
    };
    for (const char* text : hostile) {
        EXPECT_NO_THROW(retriever.search({.text = text})) << text;
    }
    std::string with_nul("bicycle\0NEAR(", 13);
    EXPECT_NO_THROW(retriever.search({.text = with_nul}));
    // Words still count: the quoted or decorated word finds its entries.
    EXPECT_EQ(retriever.search({.text = "\"bicycle"}).size(), 2u);
    EXPECT_EQ(retriever.search({.text = "transcript:umbrella*"}).size(), 1u);
    EXPECT_EQ(store.count(), 5);
}

TEST_F(MemoryRetrieval, QueryEmbeddingMustHaveTheStoresDim)
{
    try {
        retriever.search({.embedding = std::vector<float>(kDim + 1, 1.0f)});
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    }
}

TEST_F(MemoryRetrieval, RemovedEntriesAreNotReturned)
{
    ASSERT_TRUE(store.remove(ids[2]));
    auto hits = retriever.search({.text = "bicycle", .embedding = embedding_near(kDim, 2, 77)});
    for (const Hit& h : hits) EXPECT_NE(h.entry.id, ids[2]);
    EXPECT_EQ(hits.at(0).entry.id, ids[0]);
}

TEST(MemoryRetrievalScale, NarrowTimeRangeIsExactOnAnIvfIndex)
{
    // 700 entries, IVF with 16 lists of which a search normally scans 1: a narrow range must
    // still find its entries whichever lists they are in. Entries added in time order (a live
    // stream) and in reverse (an import) take different paths to the same answer.
    for (bool reversed : {false, true}) {
        SCOPED_TRACE(reversed ? "reversed" : "in time order");
        TempDir dir;
        Store store = Store::open(
            dir.path(), {.dim = kDim, .ivf_threshold = 650, .ivf_nlist = 16, .ivf_nprobe = 1});
        std::vector<Entry> batch;
        for (int n = 0; n < 700; ++n) {
            int i = reversed ? 699 - n : n;
            batch.push_back(
                make_entry(10 * i, "clip", embedding_near(kDim, i, uint32_t(i), 0.3f), 0));
        }
        std::vector<int64_t> ids = store.add(batch);
        if (reversed) std::reverse(ids.begin(), ids.end()); // ids[i]: the entry at 10 * i s
        ASSERT_EQ(store.stats().index_nlist, 16);
        ASSERT_TRUE(store.remove(ids[251]));
        auto check = [&](const Store& s) {
            Retriever retriever(s);
            for (int probe : {3, 250, 251, 699}) {
                // The query points away from the entry: only the time range singles it out.
                auto hits = retriever.search({.embedding = embedding_near(kDim, probe + 9, 1),
                                              .k = 3,
                                              .t_from_us = int64_t(10 * probe) * 1'000'000,
                                              .t_to_us = int64_t(10 * probe + 1) * 1'000'000});
                if (probe == 251) {
                    EXPECT_TRUE(hits.empty()); // removed
                    continue;
                }
                ASSERT_EQ(hits.size(), 1u) << probe;
                EXPECT_EQ(hits[0].entry.id, ids[size_t(probe)]);
            }
        };
        check(store);
        store.save_index();
        check(Store::open(dir.path(), {.read_only = true})); // the spans as the file has them
    }
}

TEST(MemoryRetrievalScale, CommonWordsGiveWayToRareOnesWithinTheTextBudget)
{
    // 400 entries that all say "room"; the oldest also says "zebra". With a budget of 50
    // matching rows, "room" is too common to rank in full.
    TempDir dir;
    Store store = Store::open(dir.path(), {.dim = kDim});
    std::vector<Entry> batch;
    for (int i = 0; i < 400; ++i)
        batch.push_back(make_entry(10 * i, i == 0 ? "a zebra in the room" : "an empty room",
                                   embedding_near(kDim, i, uint32_t(i)), 0));
    std::vector<int64_t> ids = store.add(batch);
    Retriever retriever(store, {.text_budget = 50});

    auto hits = retriever.search({.text = "room zebra", .k = 1});
    ASSERT_EQ(hits.size(), 1u); // ranked by the rare word
    EXPECT_EQ(hits[0].entry.id, ids[0]);

    // Every word common: the newest matches come first.
    hits = retriever.search({.text = "room", .k = 3});
    ASSERT_EQ(hits.size(), 3u);
    EXPECT_EQ(hits[0].entry.id, ids[399]);
    EXPECT_EQ(hits[2].entry.id, ids[397]);
    // The rare word's match, then the common word's newest.
    hits = retriever.search({.text = "zebra room", .k = 2});
    ASSERT_EQ(hits.size(), 2u);
    EXPECT_EQ(hits[0].entry.id, ids[0]);
    EXPECT_EQ(hits[1].entry.id, ids[399]);

    // Within a time range, common words find the range's entries.
    hits = retriever.search({.text = "room", .k = 10, .t_from_us = 0, .t_to_us = 95'000'000});
    ASSERT_EQ(hits.size(), 10u);
    for (const Hit& h : hits) EXPECT_LE(h.entry.id, ids[9]);
}
