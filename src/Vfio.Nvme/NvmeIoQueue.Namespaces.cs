using Vfio.Dma;
using Vfio.Nvme.Queues;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>Compare (NVMe 1.4 §6.2) and Dataset Management with a list of ranges (§6.7).</summary>
public sealed partial class NvmeIoQueue
{
    /// <summary>Most ranges one Dataset Management command carries (NR is 8 bits, 0's based; 256 × 16 bytes is one 4 KiB page).</summary>
    public const int MaxDsmRanges = 256;

    /// <summary>
    /// Compares <paramref name="blocks"/> blocks at <paramref name="lba"/> with <paramref name="buffer"/> at
    /// <paramref name="offset"/>: true when the media holds the same bytes. A transfer over the command limit is split;
    /// the first difference ends it.
    /// </summary>
    /// <returns>False when the controller answered Compare Failure (SCT 2h, SC 85h).</returns>
    /// <exception cref="NotSupportedException">ONCS says the controller lacks Compare.</exception>
    /// <exception cref="NvmeCommandException">The controller failed the command for another reason.</exception>
    public bool Compare(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0)
    {
        RequireOptional(OptionalNvmCommands.Compare, "Compare");
        try
        {
            RunSync(PrepareTransfer(NvmOpcode.Compare, ns, lba, blocks, buffer, offset, synchronous: true));
            return true;
        }
        catch (NvmeCommandException e) when (IsCompareFailure(e.Status))
        {
            return false;
        }
    }

    /// <summary>Compares asynchronously; see <see cref="Compare"/>.</summary>
    public ValueTask<bool> CompareAsync(NvmeNamespace ns, ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0, CancellationToken cancellationToken = default)
    {
        RequireOptional(OptionalNvmCommands.Compare, "Compare");
        return CompareResult(SubmitTransferAsync(NvmOpcode.Compare, ns, lba, blocks, buffer, offset, cancellationToken));
    }

    /// <summary>True for Compare Failure, the status that means "the data differ" rather than an error.</summary>
    public static bool IsCompareFailure(NvmeStatus status) =>
        status.Type == StatusCodeType.MediaError && status.Code == (byte)MediaErrorStatusCode.CompareFailure;

    /// <summary>
    /// Deallocates (trims) up to <see cref="MaxDsmRanges"/> ranges with one Dataset Management command (AD set).
    /// </summary>
    /// <exception cref="ArgumentException">No ranges, more than 256, a range of no blocks, or one past the end of the LBA space.</exception>
    /// <exception cref="NotSupportedException">ONCS says the controller lacks Dataset Management.</exception>
    public void DeallocateRanges(NvmeNamespace ns, IReadOnlyList<(ulong Lba, int Blocks)> ranges) =>
        RunSync(PrepareRanges(ns, ToDsmRanges(ranges), DsmAttributes.Deallocate, synchronous: true));

    /// <summary>Deallocates ranges asynchronously; see <see cref="DeallocateRanges"/>.</summary>
    public ValueTask DeallocateAsync(NvmeNamespace ns, IReadOnlyList<(ulong Lba, int Blocks)> ranges, CancellationToken cancellationToken = default) =>
        SubmitAsync(PrepareRanges(ns, ToDsmRanges(ranges), DsmAttributes.Deallocate, synchronous: false), cancellationToken);

    /// <summary>
    /// Dataset Management (NVMe 1.4 §6.7) with 1 to 256 ranges, each with its own context attributes
    /// (<see cref="DsmContext.Create"/>), and the command's attributes: <see cref="DsmAttributes.Deallocate"/>,
    /// <see cref="DsmAttributes.IntegralRead"/>, <see cref="DsmAttributes.IntegralWrite"/>, or none (hints only).
    /// </summary>
    /// <exception cref="ArgumentException">No ranges, more than 256, a range of no blocks or past the end of the LBA
    /// space, or attributes other than those three.</exception>
    public ValueTask DatasetManagementAsync(NvmeNamespace ns, IReadOnlyList<DsmRange> ranges, DsmAttributes attributes,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        return SubmitAsync(PrepareRanges(ns, [.. ranges], attributes, synchronous: false), cancellationToken);
    }

    /// <summary>A bounced compare for <see cref="NvmeBlockDevice"/>: <paramref name="expected"/> is copied into a pooled buffer first.</summary>
    internal ValueTask<bool> CompareBouncedAsync(NvmeNamespace ns, ulong lba, ReadOnlyMemory<byte> expected, CancellationToken cancellationToken)
    {
        RequireOptional(OptionalNvmCommands.Compare, "Compare");
        var r = PrepareBounced(NvmOpcode.Compare, ns, lba, expected.Length, synchronous: false);
        expected.Span.CopyTo(r.Bounce!.Span);
        return CompareResult(SubmitAsync(r, cancellationToken));
    }

    private static async ValueTask<bool> CompareResult(ValueTask operation)
    {
        try
        {
            await operation.ConfigureAwait(false);
            return true;
        }
        catch (NvmeCommandException e) when (IsCompareFailure(e.Status))
        {
            return false;
        }
    }

    private static DsmRange[] ToDsmRanges(IReadOnlyList<(ulong Lba, int Blocks)> ranges)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        CheckRangeCount(ranges.Count);
        var list = new DsmRange[ranges.Count];
        for (int i = 0; i < list.Length; i++)
        {
            var (lba, blocks) = ranges[i];
            if (blocks < 1) { throw new ArgumentOutOfRangeException(nameof(ranges), blocks, $"range {i} has {blocks} blocks; each range has at least 1"); }
            list[i] = new DsmRange { StartingLba = lba, BlockCount = (uint)blocks };
        }
        return list;
    }

    private static void CheckRangeCount(int count)
    {
        if (count is < 1 or > MaxDsmRanges)
        {
            throw new ArgumentOutOfRangeException("ranges", count, $"one Dataset Management command carries 1..{MaxDsmRanges} ranges");
        }
    }

    private NvmeRequest PrepareRanges(NvmeNamespace ns, DsmRange[] ranges, DsmAttributes attributes, bool synchronous)
    {
        ArgumentNullException.ThrowIfNull(ns);
        RequireOptional(OptionalNvmCommands.DatasetManagement, "Dataset Management");
        CheckRangeCount(ranges.Length);
        if (((uint)attributes & ~7u) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(attributes), attributes, "Dataset Management attributes are IDR, IDW and AD (CDW11 bits 2:0)");
        }
        for (int i = 0; i < ranges.Length; i++)
        {
            ref readonly var r = ref ranges[i];
            if (r.BlockCount == 0 || r.StartingLba > ulong.MaxValue - r.BlockCount)
            {
                throw new ArgumentOutOfRangeException(nameof(ranges), r.BlockCount,
                    $"range {i} (LBA {r.StartingLba}, {r.BlockCount} blocks) is empty or runs past the end of the 64-bit LBA space");
            }
            // As for single ranges, the controller checks them against the namespace size (LBA Out of Range).
        }
        var request = Rent(NvmOpcode.DatasetManagement, ns, 0, 1, synchronous);
        lock (_lock)
        {
            request.DsmRanges = ranges;
            request.DsmAttributes = attributes;
        }
        return request;
    }

    /// <summary>Writes the request's ranges into the slot's PRP page (exactly 256 ranges fit one 4 KiB page) and builds the command.</summary>
    private unsafe NvmeCommand RangesCommandLocked(NvmeRequest r, nint listPointer, DmaAddress listAddress)
    {
        var ranges = r.DsmRanges!;
        // SAFETY: the page belongs to the slot taken for this command and is at least 4096 bytes; 256 ranges of 16 bytes fill
        // it exactly, and CheckRangeCount bounded the count before the request was queued.
        var page = new Span<DsmRange>((void*)listPointer, ranges.Length);
        ranges.CopyTo(page);
        return NvmeCommand.DatasetManagement(r.Nsid, ranges.Length, r.DsmAttributes, listAddress);
    }
}
