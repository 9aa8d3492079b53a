using CsCheck;
using Vfio.Nvme.Queues;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme.Tests;

/// <summary>
/// The driver's own bookkeeping around the spec definitions (which Vfio.Spec.Tests checks against the NVMe base
/// specification): how a failed command is described, and the ring arithmetic of its queues.
/// </summary>
public sealed class CommandInfoTests
{
    [Fact]
    public void CommandInfoNamesTheCommand()
    {
        var c = NvmeCommand.ReadWrite(NvmOpcode.Read, 1, 100, 8, default, default);
        c.CommandId = 5;
        var text = NvmeCommandInfo.From(2, c).ToString();
        Assert.Contains("Read", text);
        Assert.Contains("cid 5", text);
        Assert.Contains("LBA 100..107", text);
        Assert.Equal("CreateIoSubmissionQueue", NvmeCommandInfo.From(0, NvmeCommand.CreateIoSubmissionQueue(1, 2, default, 1)).OpcodeName);
    }
}

public sealed class QueueMathTests
{
    [Fact]
    public void PhaseFlipsEachTimeTheHeadWraps()
    {
        int head = 0;
        bool phase = true;
        var seen = new List<(int, bool)>();
        for (int i = 0; i < 7; i++)
        {
            seen.Add((head, phase));
            QueueMath.AdvanceHead(ref head, ref phase, 3);
        }
        Assert.Equal([(0, true), (1, true), (2, true), (0, false), (1, false), (2, false), (0, true)], seen);
    }

    [Fact]
    public void FullMeansOneSlotLeftEmpty()
    {
        Assert.True(QueueMath.IsFull(0, 3, 4));
        Assert.False(QueueMath.IsFull(0, 2, 4));
        Assert.True(QueueMath.IsFull(2, 1, 4));
        Assert.Equal(3, QueueMath.Used(1, 0, 4));
        Assert.Equal(0, QueueMath.Used(2, 2, 4));
        Assert.Equal(0, QueueMath.Next(3, 4));
    }

    [Fact]
    public void UsedAndNextAgreeForAnyRing()
    {
        Gen.Int[2, 4096].SelectMany(n => Gen.Int[0, n - 1].SelectMany(h => Gen.Int[0, n - 1].Select(t => (n, h, t))))
            .Sample(x =>
            {
                var (n, h, t) = x;
                int used = QueueMath.Used(h, t, n);
                return used >= 0 && used < n
                    && QueueMath.Used(h, QueueMath.Next(t, n), n) == (used + 1) % n
                    && QueueMath.IsFull(h, t, n) == (used == n - 1);
            });
    }
}
