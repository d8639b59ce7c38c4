// Built without instruction-set flags, so that every level may call it.
#include "kernels/cpu/kernels.h"

namespace bitnet::cpu {

void attention_each_query(const AttentionHeadArgs& a, void (*one)(const AttentionHeadArgs&)) {
    for (int i = 0; i < a.n_queries; ++i) {
        AttentionHeadArgs q = a;
        q.n_queries = 1;
        q.q = a.q + static_cast<size_t>(i) * a.head_dim;
        q.out = a.out + static_cast<size_t>(i) * a.head_dim;
        q.scratch = a.scratch + static_cast<size_t>(i) * a.n_keys;
        one(q);
    }
}

}  // namespace bitnet::cpu
