using System.Text.Json;
using Vfio.Cli.Tools.Nvme;
using Vfio.Emulation.Nvme;
using Vfio.Nvme.Tests.Emulation;
using Vfio.Spec.Nvme;

namespace Vfio.Cli.Tests;

/// <summary>
/// <c>vfio nvme perf</c> against the emulated controller (4 MiB of 512-byte blocks, MDTS 128 KiB, 2048-entry
/// queues, 64 I/O queues): every workload, verification and corruption, several queues, the JSON fields a bench
/// script reads, and bad input. Runs are 0.3 s.
/// </summary>
public sealed partial class NvmeTests
{
    /// <summary>Every field of the perf document; scripts grep these names.</summary>
    private static readonly string[] PerfFields =
    [
        "address", "mode", "dmaIsolated", "nsid", "api", "workload", "readPercent", "ioBytes", "queueDepth", "queues", "seconds",
        "rampSeconds", "verify", "spanBytes", "ios", "reads", "writes", "errors", "mismatches", "iops", "mbPerSecond", "p50Us", "p90Us",
        "p99Us", "p999Us", "p9999Us", "maxUs", "allocatedBytesPerIo", "queueThreadAllocatedBytesPerIo", "cpuSecondsPerMillionIos", "submissionDoorbellsPerIo",
        "completionDoorbellsPerIo", "queueIos", "firstError", "firstMismatch", "allocCheckReads", "allocCheckBytesPerRead",
    ];

    private JsonElement Perf(params string[] args) => Ok(Run(["nvme", "perf", Bdf, "-t", "0.3", .. args, "--json"]));

    [Fact]
    public void Perf_json_has_every_field_with_iops_latencies_and_per_io_costs()
    {
        var d = Perf("-q", "8", "--ramp", "0.1");

        Assert.Equal(PerfFields, d.EnumerateObject().Select(p => p.Name));
        Assert.Equal(Bdf, d.GetProperty("address").GetString());
        Assert.Equal("raw", d.GetProperty("api").GetString());
        Assert.Equal("randread", d.GetProperty("workload").GetString());
        Assert.Equal(100, d.GetProperty("readPercent").GetInt32());
        Assert.Equal(4096, d.GetProperty("ioBytes").GetInt32());
        Assert.Equal(8, d.GetProperty("queueDepth").GetInt32());
        Assert.Equal(1, d.GetProperty("queues").GetInt32());
        Assert.Equal(0.3, d.GetProperty("seconds").GetDouble());
        Assert.Equal(0.1, d.GetProperty("rampSeconds").GetDouble());
        Assert.False(d.GetProperty("verify").GetBoolean());
        Assert.Equal(8192UL * 512, d.GetProperty("spanBytes").GetUInt64());
        long ios = d.GetProperty("ios").GetInt64();
        Assert.True(ios > 0);
        Assert.Equal(ios, d.GetProperty("reads").GetInt64());
        Assert.Equal(0, d.GetProperty("writes").GetInt64());
        Assert.Equal(0, d.GetProperty("errors").GetInt64());
        Assert.Equal(0, d.GetProperty("mismatches").GetInt64());
        Assert.Equal(ios / 0.3, d.GetProperty("iops").GetDouble(), 0.1 * ios);
        Assert.True(d.GetProperty("mbPerSecond").GetDouble() > 0);
        double[] latencies = [.. new[] { "p50Us", "p90Us", "p99Us", "p999Us", "p9999Us", "maxUs" }.Select(f => d.GetProperty(f).GetDouble())];
        Assert.True(latencies[0] > 0);
        Assert.Equal(latencies.Order(), latencies);                     // percentiles never decrease, max last
        // Batching: at most one SQ and one CQ doorbell per reap round, so no more than one of each per I/O.
        double sq = d.GetProperty("submissionDoorbellsPerIo").GetDouble(), cq = d.GetProperty("completionDoorbellsPerIo").GetDouble();
        Assert.True(sq is > 0 and <= 1.0, $"{sq}");
        Assert.True(cq is > 0 and <= 1.0, $"{cq}");
        // The loop allocates nothing per I/O: anything it did allocate per I/O would be an object of 24 bytes or more.
        // Below a byte is room for a one-off (a lock's first contention in the model). The process-wide figure also
        // counts the tests that run beside this one.
        Assert.True(d.GetProperty("allocatedBytesPerIo").GetDouble() >= 0);
        double allocated = d.GetProperty("queueThreadAllocatedBytesPerIo").GetDouble();
        Assert.True(allocated is >= 0 and < 1, $"{allocated} bytes per I/O");
        Assert.True(d.GetProperty("cpuSecondsPerMillionIos").GetDouble() > 0);
        Assert.Equal([ios], d.GetProperty("queueIos").EnumerateArray().Select(e => e.GetInt64()));
        Assert.Equal(JsonValueKind.Null, d.GetProperty("firstError").ValueKind);
        Assert.Equal(JsonValueKind.Null, d.GetProperty("firstMismatch").ValueKind);
        Assert.Equal(JsonValueKind.Null, d.GetProperty("allocCheckReads").ValueKind);
        Assert.Equal(JsonValueKind.Null, d.GetProperty("allocCheckBytesPerRead").ValueKind);
    }

    [Theory]
    [InlineData("randread", 100, "raw")]
    [InlineData("randwrite", 0, "raw")]
    [InlineData("read", 100, "raw")]
    [InlineData("write", 0, "raw")]
    [InlineData("randrw", 50, "raw")]
    [InlineData("randread", 100, "async")]
    [InlineData("randwrite", 0, "async")]
    [InlineData("read", 100, "async")]
    [InlineData("write", 0, "async")]
    [InlineData("randrw", 50, "async")]
    public void Perf_runs_every_workload_without_errors(string workload, int readPercent, string api)
    {
        var d = Perf("-w", workload, "-q", "4", "--api", api);

        Assert.Equal(api, d.GetProperty("api").GetString());
        Assert.Equal(workload, d.GetProperty("workload").GetString());
        Assert.Equal(readPercent, d.GetProperty("readPercent").GetInt32());
        long ios = d.GetProperty("ios").GetInt64(), reads = d.GetProperty("reads").GetInt64(), writes = d.GetProperty("writes").GetInt64();
        Assert.True(ios > 0);
        Assert.Equal(0, d.GetProperty("errors").GetInt64());
        Assert.Equal(ios, reads + writes);
        if (readPercent == 100) { Assert.Equal(0, writes); }
        else if (readPercent == 0) { Assert.Equal(0, reads); }
        else { Assert.True(reads > 0 && writes > 0, $"{reads} reads, {writes} writes"); }
        Assert.True(d.GetProperty("submissionDoorbellsPerIo").GetDouble() is > 0 and <= 1.0);
    }

    [Fact]
    public void Perf_async_allocates_nothing_per_io_on_the_completion_thread()
    {
        var d = Perf("-q", "8", "--api", "async", "--ramp", "0.1");

        Assert.True(d.GetProperty("ios").GetInt64() > 1000);
        Assert.True(d.GetProperty("queueThreadAllocatedBytesPerIo").GetDouble() < 1.0,
            $"{d.GetProperty("queueThreadAllocatedBytesPerIo").GetDouble()} bytes per I/O on the completion thread");
    }

    [Fact]
    public void The_perf_meter_counts_what_the_driver_retired_in_the_window_from_its_meter()
    {
        using var c = Vfio.Nvme.NvmeController.Open(_nvme);
        var ns = c.Namespaces[0];
        using var q = c.CreateIoQueue();
        using var buf = _nvme.Dma.Allocate(4096);
        using var meter = new PerfMeter(_nvme.Address);
        meter.Watch([q.QueueId]);

        q.Read(ns, 0, 8, buf);                                          // before the window: not counted
        meter.Open(new PerfWindow(System.Diagnostics.Stopwatch.GetTimestamp(), long.MaxValue));
        q.Write(ns, 0, 8, buf);
        q.Read(ns, 0, 8, buf);
        q.Read(ns, 8, 8, buf);
        q.Flush(ns);                                                    // not a read or a write: not the workload
        _nvme.FailNextIo = NvmeStatus.Create(StatusCodeType.MediaError, 0x81);
        Assert.Throws<Vfio.Nvme.NvmeCommandException>(() => q.Read(ns, 0, 8, buf));
        var t = meter.Totals();

        Assert.Equal(3, t.Ios);
        Assert.Equal(2, t.Reads);
        Assert.Equal(1, t.Writes);
        Assert.Equal(1, t.Errors);
        Assert.Equal([3L], t.QueueIos);
        Assert.Equal(3, t.Latency.TotalCount);
    }

    [Fact]
    public void Perf_randrw_follows_the_read_percentage_and_larger_ios()
    {
        var d = Perf("-w", "randrw", "-M", "80", "-o", "16k", "-q", "4");

        Assert.Equal(80, d.GetProperty("readPercent").GetInt32());
        Assert.Equal(16384, d.GetProperty("ioBytes").GetInt32());
        double share = d.GetProperty("reads").GetInt64() / (double)d.GetProperty("ios").GetInt64();
        Assert.InRange(share, 0.7, 0.9);
    }

    [Theory]
    [InlineData("randread", "raw")]
    [InlineData("randrw", "raw")]
    [InlineData("read", "raw")]
    [InlineData("randread", "async")]
    [InlineData("randrw", "async")]
    public void Perf_verify_prefills_the_span_and_finds_every_block_intact(string workload, string api)
    {
        var d = Perf("-w", workload, "-q", "8", "-o", "8k", "--verify", "--size", "1m", "--api", api);

        Assert.True(d.GetProperty("verify").GetBoolean());
        Assert.Equal(1UL << 20, d.GetProperty("spanBytes").GetUInt64());
        Assert.True(d.GetProperty("reads").GetInt64() > 0);
        Assert.Equal(0, d.GetProperty("errors").GetInt64());
        Assert.Equal(0, d.GetProperty("mismatches").GetInt64());
        Assert.Equal(JsonValueKind.Null, d.GetProperty("firstMismatch").ValueKind);
        // The pass before the run wrote the pattern over the whole span, and the span only.
        Assert.Equal(0, VerifyPattern.Check(_nvme.Disk[..(1 << 20)], 0, 512, VerifyPattern.DefaultSeed, out _));
        Assert.All(_nvme.Disk[(1 << 20)..].ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Perf_verify_writes_the_lba_tagged_pattern()
    {
        var d = Perf("-w", "write", "-q", "2", "--verify");

        Assert.Equal(4UL << 20, d.GetProperty("spanBytes").GetUInt64());   // min(namespace, 64 MiB)
        Assert.Equal(0, d.GetProperty("mismatches").GetInt64());
        Assert.Equal(0, VerifyPattern.Check(_nvme.Disk[..4096], 0, 512, VerifyPattern.DefaultSeed, out _));
    }

    [Fact]
    public void Perf_verify_counts_blocks_corrupted_after_the_prefill_and_exits_2()
    {
        const int prefillWrites = (4 << 20) / 4096;
        bool finished = false;
        // Once the first read was fetched, the write pass is over: then the disk goes bad under the readers.
        var corrupt = new Thread(() =>
        {
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (_nvme.Model.IoCommands <= prefillWrites && DateTime.UtcNow < deadline && !Volatile.Read(ref finished)) { Thread.Sleep(1); }
            _nvme.Disk.Fill(0x5A);
        });
        corrupt.Start();
        var r = Run("nvme", "perf", Bdf, "-t", "0.3", "-q", "4", "--verify", "--json");
        Volatile.Write(ref finished, true);
        corrupt.Join();

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        var d = Json.Parse(r.Out);
        Assert.Equal(0, d.GetProperty("errors").GetInt64());
        long mismatches = d.GetProperty("mismatches").GetInt64();
        Assert.True(mismatches > 0);
        Assert.Matches(@"^LBA \d+ byte \d+: expected 0x[0-9a-f]{2}, read 0x5a$", d.GetProperty("firstMismatch").GetString());
        Assert.Contains($"{mismatches} blocks read back other than written", r.Err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("raw")]
    [InlineData("async")]
    public void Perf_on_two_queues_rings_both_and_counts_each(string api)
    {
        var d = Perf("-c", "2", "-q", "4", "-w", "read", "--ramp", "0.1", "--api", api);

        Assert.Equal(2, d.GetProperty("queues").GetInt32());
        Assert.Equal(0.1, d.GetProperty("rampSeconds").GetDouble());
        long[] perQueue = [.. d.GetProperty("queueIos").EnumerateArray().Select(e => e.GetInt64())];
        Assert.Equal(2, perQueue.Length);
        Assert.All(perQueue, n => Assert.True(n > 0));
        Assert.Equal(perQueue.Sum(), d.GetProperty("ios").GetInt64());
        Assert.True(_nvme.SubmissionDoorbells(1) > 0);
        Assert.True(_nvme.SubmissionDoorbells(2) > 0);
    }

    [Fact]
    public void Perf_alloc_check_reports_the_managed_bytes_per_synchronous_read()
    {
        var d = Ok(Run("nvme", "perf", Bdf, "-q", "4", "-t", "0.2", "--alloc-check", "300", "--json"));

        Assert.Equal(300, d.GetProperty("allocCheckReads").GetInt32());
        double perIo = d.GetProperty("allocCheckBytesPerRead").GetDouble();
        Assert.True(perIo >= 0 && double.IsFinite(perIo), $"{perIo}");
        Assert.True(d.GetProperty("ios").GetInt64() > 0);

        var r = Run("nvme", "perf", Bdf, "-q", "4", "-t", "0.2", "--alloc-check", "300");
        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Matches(@"managed allocation: \d+\.\d{3} bytes per synchronous polled read, over 300 reads", r.Out);
    }

    [Fact]
    public void Perf_table_prints_progress_lines_and_a_summary()
    {
        var r = Run("nvme", "perf", Bdf, "-q", "4", "-t", "1.5", "-c", "2");

        Assert.Equal(ExitCodes.Ok, r.ExitCode);
        Assert.Contains("randread 4 KiB, queue depth 4, 2 queues, 1.5 s", r.Out, StringComparison.Ordinal);
        // A progress line about once a second; a loaded machine may print it at 1.1 s.
        Assert.Matches(@"1\.\d s\s+[\d,]+ I/Os\s+[\d,]+ IOPS", r.Out);
        Assert.Matches(@"IOPS\s+MB/s\s+p50 us\s+p99 us\s+p99\.9 us\s+p99\.99 us\s+max us\s+reads\s+writes\s+errors\s+mismatches", r.Out);
        Assert.Matches(@"per I/O: \d\.\d{3} SQ and \d\.\d{3} CQ doorbell writes, \d+\.\d{3} managed bytes allocated by the process \(\d+\.\d{3} by the queue threads\)", r.Out);
        Assert.Matches(@"I/Os per queue: [\d,]+, [\d,]+", r.Out);
    }

    [Fact]
    public void Perf_with_failed_reads_exits_2_and_names_the_status()
    {
        _nvme.FailNextIo = NvmeStatus.Create(StatusCodeType.MediaError, 0x81);
        var r = Run("nvme", "perf", Bdf, "-q", "2", "-t", "0.2", "--json");

        Assert.Equal(ExitCodes.DeviceOrHost, r.ExitCode);
        var d = Json.Parse(r.Out);
        Assert.Equal(1, d.GetProperty("errors").GetInt64());
        Assert.Contains("Unrecovered Read Error", d.GetProperty("firstError").GetString(), StringComparison.Ordinal);
        Assert.Contains("1 of ", r.Err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-q 0")]
    [InlineData("-q 65536")]
    [InlineData("-t 0")]
    [InlineData("-t -1")]
    [InlineData("-t x")]
    [InlineData("-q x")]
    [InlineData("-w sequential")]
    [InlineData("-M 101 -w randrw")]
    [InlineData("-M -1 -w randrw")]
    [InlineData("-M 50")]                                            // -M without randrw
    [InlineData("-w read -M 50")]
    [InlineData("--ramp -1")]
    [InlineData("--ramp x")]
    [InlineData("-o 1000")]                                          // not a multiple of 512
    [InlineData("-o 0")]
    [InlineData("-o 4q")]
    [InlineData("-c 0")]
    [InlineData("-c 257")]
    [InlineData("--size 0")]
    [InlineData("--api uring")]
    [InlineData("--alloc-check -1")]
    [InlineData("--alloc-check 1000001")]
    [InlineData("--alloc-check x")]
    public void Perf_bad_arguments_are_usage_errors_before_the_device_is_opened(string args)
    {
        var r = Run(["nvme", "perf", Bdf, .. args.Split(' ')]);

        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.StartsWith("vfio: ", r.Err, StringComparison.Ordinal);
        Assert.Equal(0, _opens);
    }

    [Theory]
    [InlineData("-o 256k", "more than the controller moves in one command (MDTS: 128 KiB)")]
    [InlineData("-q 2048", "at most 2047 commands (CAP.MQES); use -q 2047 or less")]
    [InlineData("-c 65", "the controller granted 64 I/O queues; use -c 64 or less")]
    [InlineData("--size 8m", "more than namespace 1 holds (4194304 bytes)")]
    [InlineData("-c 2 --size 4k", "fewer than one 4096-byte I/O per queue (2 queues)")]
    public void Perf_limits_of_the_controller_are_usage_errors_naming_the_limit(string args, string message)
    {
        var r = Run(["nvme", "perf", Bdf, "-t", "0.1", .. args.Split(' ')]);

        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains(message, r.Err, StringComparison.Ordinal);
        Assert.Equal(1, _opens);
    }

    [Fact]
    public void Perf_io_size_must_be_whole_blocks_of_the_namespace()
    {
        using var nvme = new EmulatedNvme(options: new NvmeDeviceOptions { BlockSize = 4096, BlockCount = 1024 });
        var r = new CliRunner(_fs) { OpenDevice = (_, _) => nvme }.Run("nvme", "perf", Bdf, "-o", "2048").AssertNoStackTrace();

        Assert.Equal(ExitCodes.Usage, r.ExitCode);
        Assert.Contains("-o 2048 is not a multiple of namespace 1's 4096-byte blocks", r.Err, StringComparison.Ordinal);
    }

    // ------------------------------------------------------------------ the workload's pure parts

    [Fact]
    public void Verify_pattern_depends_on_lba_and_offset_only_and_check_finds_the_first_bad_byte()
    {
        var a = new byte[4 * 512];
        var b = new byte[4 * 512];
        VerifyPattern.Fill(a, 100, 512, VerifyPattern.DefaultSeed);
        VerifyPattern.Fill(b.AsSpan(1024), 102, 512, VerifyPattern.DefaultSeed);    // the same blocks, written on their own
        Assert.Equal(a.AsSpan(1024).ToArray(), b.AsSpan(1024).ToArray());
        Assert.Equal(0, VerifyPattern.Check(a, 100, 512, VerifyPattern.DefaultSeed, out _));
        Assert.Equal(4, VerifyPattern.Check(a, 101, 512, VerifyPattern.DefaultSeed, out _));   // the wrong LBA: every block differs
        Assert.NotEqual(a.AsSpan(0, 8).ToArray(), a.AsSpan(8, 8).ToArray());                  // and so do the words of one block

        a[2 * 512 + 13] ^= 0x40;
        a[3 * 512 + 500] ^= 0x01;
        Assert.Equal(2, VerifyPattern.Check(a, 100, 512, VerifyPattern.DefaultSeed, out var first));
        Assert.Equal(102UL, first.Lba);
        Assert.Equal(13, first.Offset);
        Assert.Equal((byte)(first.Expected ^ 0x40), first.Actual);
    }

    [Fact]
    public void Sequential_pickers_walk_their_own_region_and_wrap()
    {
        var plan = Plan(PerfWorkload.Read, readPercent: 100, queues: 2, regionUnits: 3);
        var q0 = new IoPicker(plan, 0);
        var q1 = new IoPicker(plan, 1);

        Assert.Equal([0UL, 8, 16, 0, 8], Lbas(ref q0, 5));      // 4 KiB of 512-byte blocks: 8 blocks a step
        Assert.Equal([24UL, 32, 40, 24], Lbas(ref q1, 4));
        Assert.False(q0.Next(out _));                            // reads
    }

    [Fact]
    public void Random_pickers_stay_aligned_in_the_span_and_mix_by_percentage()
    {
        var plan = Plan(PerfWorkload.RandRw, readPercent: 25, queues: 2, regionUnits: 50);
        var picker = new IoPicker(plan, 1);
        int writes = 0;
        var seen = new HashSet<ulong>();
        for (int i = 0; i < 10_000; i++)
        {
            if (picker.Next(out ulong lba)) { writes++; }
            Assert.Equal(0UL, lba % 8);
            Assert.InRange(lba, 0UL, 99 * 8UL);
            seen.Add(lba);
        }
        Assert.Equal(100, seen.Count);                           // every unit of both regions is reached
        Assert.InRange(writes, 7_000, 8_000);
        var other = new IoPicker(plan, 0);
        Assert.NotEqual(Lbas(ref other, 8), Lbas(ref picker, 8)); // queues do not repeat each other
    }

    [Theory]
    [InlineData("4096", 4096UL)]
    [InlineData("4k", 4096UL)]
    [InlineData("128K", 131072UL)]
    [InlineData("64MiB", 64UL << 20)]
    [InlineData("1G", 1UL << 30)]
    [InlineData("512B", 512UL)]
    [InlineData("0", null)]
    [InlineData("k", null)]
    [InlineData("-4k", null)]
    [InlineData("4x", null)]
    public void Sizes_are_bytes_or_binary_multiples(string text, ulong? bytes) =>
        Assert.Equal(bytes, Commands.Arguments.ParseSize(text));

    private static PerfPlan Plan(PerfWorkload workload, int readPercent, int queues, ulong regionUnits)
    {
        var identify = new byte[4096];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(identify, 8192);             // NSZE
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(identify.AsSpan(128), 9u << 16);   // LBAF0: 512-byte blocks
        var ns = new Vfio.Nvme.NvmeNamespace(1, IdentifyNamespace.Parse(identify));
        return new PerfPlan(ns, workload, readPercent, 4096, 4, queues, regionUnits, TimeSpan.Zero, TimeSpan.FromSeconds(1), Verify: false);
    }

    private static ulong[] Lbas(ref IoPicker picker, int count)
    {
        var lbas = new ulong[count];
        for (int i = 0; i < count; i++) { picker.Next(out lbas[i]); }
        return lbas;
    }
}
