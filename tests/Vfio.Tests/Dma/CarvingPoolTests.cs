using CsCheck;
using Vfio.Dma;

namespace Vfio.Tests.Dma;

public class CarvingPoolTests
{
    private const ulong Chunk = 2UL << 20;
    private const ulong Page = 4096;

    private sealed class FakeChunk(int id)
    {
        public int Id { get; } = id;
        public int Releases { get; set; }
    }

    private static (CarvingPool<FakeChunk> Pool, List<FakeChunk> Created) NewPool()
    {
        var created = new List<FakeChunk>();
        var pool = new CarvingPool<FakeChunk>(Chunk, Page,
            () => { var c = new FakeChunk(created.Count); created.Add(c); return c; },
            c => c.Releases++);
        return (pool, created);
    }

    [Fact]
    public void Carvings_never_overlap_stay_in_their_chunk_are_aligned_and_chunks_go_when_empty()
    {
        var script = Gen.Select(Gen.Bool, Gen.ULong[1, Chunk], Gen.Int[12, 21], Gen.Int[0, 1000]).Array[1, 80];
        script.Sample(ops =>
        {
            var (pool, created) = NewPool();
            var live = new List<(CarvingPool<FakeChunk>.Chunk Chunk, ulong Offset, ulong Size)>();
            foreach (var (ret, rawSize, alignLog2, pick) in ops)
            {
                if (ret && live.Count > 0)
                {
                    var victim = live[pick % live.Count];
                    live.Remove(victim);
                    var released = pool.Return(victim.Chunk, victim.Offset);
                    Assert.Equal(!live.Any(l => l.Chunk == victim.Chunk), released);
                    continue;
                }
                // Mostly small requests, so chunks fill up and get shared.
                var size = pick % 4 == 0 ? rawSize : rawSize % (64 * 1024) + 1;
                var alignment = 1UL << alignLog2;
                var chunk = pool.Carve(size, alignment, out var offset);
                var rounded = (size + Page - 1) & ~(Page - 1);
                Assert.Equal(0UL, offset % alignment);
                Assert.True(offset + rounded <= Chunk, $"carving 0x{offset:x} +{rounded} leaves its chunk");
                Assert.DoesNotContain(live, l => l.Chunk == chunk && offset < l.Offset + l.Size && l.Offset < offset + rounded);
                live.Add((chunk, offset, rounded));
                Assert.Equal(live.Select(l => l.Chunk).Distinct().Count(), pool.ChunkCount);
            }
            foreach (var l in live)
            {
                pool.Return(l.Chunk, l.Offset);
            }
            Assert.Equal(0, pool.ChunkCount);
            Assert.All(created, c => Assert.Equal(1, c.Releases));
        }, iter: 500);
    }

    [Fact]
    public void Small_buffers_share_a_chunk_until_it_is_full()
    {
        var (pool, created) = NewPool();
        var carvings = Enumerable.Range(0, 512).Select(_ => (Chunk: pool.Carve(Page, Page, out var o), Offset: o)).ToList();
        Assert.Single(created);
        Assert.Equal(Enumerable.Range(0, 512).Select(i => (ulong)i * Page), carvings.Select(c => c.Offset));
        pool.Carve(1, Page, out _);
        Assert.Equal(2, created.Count);
    }

    [Fact]
    public void A_chunk_is_released_with_its_last_carving_and_not_before()
    {
        var (pool, created) = NewPool();
        var a = pool.Carve(100, Page, out var offA);
        var b = pool.Carve(100, Page, out var offB);
        Assert.Same(a, b);
        Assert.False(pool.Return(a, offA));
        Assert.Equal(0, created[0].Releases);
        Assert.True(pool.Return(b, offB));
        Assert.Equal(1, created[0].Releases);
        Assert.Throws<InvalidOperationException>(() => pool.Return(b, offB));
    }

    [Fact]
    public void A_failing_chunk_source_leaves_the_pool_unchanged()
    {
        var fail = true;
        var pool = new CarvingPool<FakeChunk>(Chunk, Page, () => fail ? throw new VfioResourceException("map", null, Errno.ENOMEM, null) : new FakeChunk(0), _ => { });
        Assert.Throws<VfioResourceException>(() => pool.Carve(Page, Page, out _));
        Assert.Equal(0, pool.ChunkCount);
        fail = false;
        pool.Carve(Page, Page, out var offset);
        Assert.Equal(0UL, offset);
    }

    [Fact]
    public void Only_requests_that_fit_a_chunk_are_carved()
    {
        var (pool, _) = NewPool();
        Assert.True(pool.Fits(Chunk, Chunk));
        Assert.False(pool.Fits(Chunk + 1, Page));
        Assert.False(pool.Fits(Page, Chunk * 2));
        Assert.False(pool.Fits(0, Page));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Carve(Chunk + 1, Page, out _));
    }
}
