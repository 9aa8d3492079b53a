using Vfio.Dma;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>
/// Compare and Dataset Management with many ranges on the block device. The device keeps the <see cref="NvmeNamespace"/>
/// it was opened with: after <see cref="NvmeController.Format"/> changes the block size, dispose it and open a new one.
/// </summary>
public sealed partial class NvmeBlockDevice
{
    /// <summary>True when the blocks at <paramref name="lba"/> hold exactly <paramref name="expected"/> (whole blocks; Compare, NVMe 1.4 §6.2).</summary>
    /// <exception cref="NotSupportedException">The controller lacks Compare (ONCS bit 0).</exception>
    public async ValueTask<bool> CompareAsync(ulong lba, ReadOnlyMemory<byte> expected, CancellationToken cancellationToken = default)
    {
        Blocks(expected.Length);
        var q = Pick();
        int piece = q.BounceBytes;
        for (int done = 0; done < expected.Length; done += piece)
        {
            var part = expected.Slice(done, Math.Min(piece, expected.Length - done));
            if (!await q.CompareBouncedAsync(Namespace, lba + (ulong)(done / BlockSize), part, cancellationToken).ConfigureAwait(false)) { return false; }
        }
        return true;
    }

    /// <summary>Compares <paramref name="blocks"/> blocks with <paramref name="buffer"/> at <paramref name="offset"/> (no copy).</summary>
    public ValueTask<bool> CompareAsync(ulong lba, int blocks, DmaBuffer buffer, ulong offset = 0, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return Pick().CompareAsync(Namespace, lba, blocks, buffer, offset, cancellationToken);
    }

    /// <summary>Deallocates up to <see cref="NvmeIoQueue.MaxDsmRanges"/> ranges with one command (Dataset Management, AD).</summary>
    public ValueTask DeallocateAsync(IReadOnlyList<(ulong Lba, int Blocks)> ranges, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return Pick().DeallocateAsync(Namespace, ranges, cancellationToken);
    }

    /// <summary>Dataset Management with ranges and attributes; see <see cref="NvmeIoQueue.DatasetManagementAsync"/>.</summary>
    public ValueTask DatasetManagementAsync(IReadOnlyList<DsmRange> ranges, DsmAttributes attributes, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return Pick().DatasetManagementAsync(Namespace, ranges, attributes, cancellationToken);
    }
}
