"""Every loss of LabOR, each a small pure function citing the paper's equation.

Symbols (as in the paper):
  A                 the segmentation model being adapted (models.SegModel)
  B = (G, F1, F2)   the pixel selector: shared backbone G, two classifier heads F1, F2 (models.PixelSelector)
  D                 the output-space discriminator (models.FCDiscriminator)
  p1, p2            softmax outputs of F1 and F2, shape (B, C, H, W)
  y_s, y_t          source labels (dense) and the target labels revealed by the annotator (sparse, 255 elsewhere)
  y_hat             pseudo-labels of A on target images (Eq. 5), 255 where not confident

Eq. 1  L_seg(A; x_s, y_s)            cross-entropy on source          -> seg_loss
Eq. 2  L_seg(A; x_t, y_t)            cross-entropy on revealed target -> seg_loss (same function, 255 ignored)
Eq. 3  L_adv(A, D)                   output-space adversarial         -> adv_generator_loss, adv_discriminator_loss
Eq. 5  y_hat = IAST pseudo-labels    class-wise adaptive thresholds   -> iast_update, pseudo_labels, pseudo_label_loss
Eq. 6  L_dis(F1, F2) = mean|p1 - p2| MCD discrepancy                  -> discrepancy
(Eq. 4, the inconsistency mask, is a selection rule, not a loss: selection.py.)
Not LabOR's: RIPU's two extra losses, for the "RIPU as published" comparison (negative_learning_loss,
local_consistency_loss).
The metric every table reports, mIoU from a confusion matrix, closes the file: iou_from_confusion.
"""
import numpy as np
import torch
import torch.nn.functional as F

IGNORE_INDEX = 255

# AdaptSegNet's multi-level weights (Tsai et al. 2018, Sec. 4), used by LabOR for Eq. 3.
LAMBDA_SEG_AUX = 0.1      # weight of the auxiliary (layer3) segmentation loss
LAMBDA_ADV_MAIN = 0.001   # weight of the adversarial loss on the main (layer4) output
LAMBDA_ADV_AUX = 0.0002   # weight of the adversarial loss on the auxiliary output

# IAST's defaults for GTA5 -> Cityscapes (Mei et al. 2020, Sec. 4.2).
IAST_THETA0, IAST_ALPHA, IAST_BETA, IAST_GAMMA = 0.9, 0.2, 0.9, 8.0
IAST_MAX_THETA = 0.999


def upsample(logits, size):
    """Bilinear upsampling of (B, C, h, w) logits to size (H, W), as every DeepLab-V2 loss does."""
    if logits.shape[-2:] == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------------------------
# Eq. 1 and Eq. 2: segmentation cross-entropy
# --------------------------------------------------------------------------------------------------------------

def seg_loss(logits, labels, ignore_index=IGNORE_INDEX):
    """Eq. 1 / Eq. 2:  L_seg = - 1/|Omega| sum_{i in Omega} log softmax(upsample(logits))_i[y_i],
    Omega = pixels whose label is not `ignore_index`.

    The same function serves dense source labels (Eq. 1) and the sparse target labels of SPL/PPL (Eq. 2).
    A batch without a single labelled pixel gives 0 (not NaN, which plain cross_entropy would return).

    logits: (B, C, h, w); labels: (B, H, W) long. Returns a scalar.
    """
    logits = upsample(logits, labels.shape[-2:])                                  # (B, C, H, W)
    total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    n_labelled = (labels != ignore_index).sum()
    return total / n_labelled.clamp(min=1)


# --------------------------------------------------------------------------------------------------------------
# Eq. 3: output-space adversarial loss (AdaptSegNet)
# --------------------------------------------------------------------------------------------------------------
# D sees softmax maps and says "source" (label 0) or "target" (label 1). A is trained so that D takes its
# target predictions for source ones; D is trained to tell them apart. As in AdaptSegNet, D's outputs are logits.

SOURCE_LABEL, TARGET_LABEL = 0.0, 1.0


def _gan_criterion(d_out, label, gan):
    target = torch.full_like(d_out, label)
    if gan == "vanilla":
        return F.binary_cross_entropy_with_logits(d_out, target)
    if gan == "ls":
        return F.mse_loss(d_out, target)
    raise ValueError(f"unknown gan {gan!r}: use 'vanilla' or 'ls'")


def adv_generator_loss(d_out_t, gan="vanilla"):
    """Eq. 3, A's side:  L_adv(A) = - mean log(1 - sigmoid(D(softmax(A(x_t)))))   (vanilla; 'ls': mean (D(.) - 0)^2)

    i.e. A is rewarded when D labels its target predictions as source (label 0 here, as in AdaptSegNet).
    d_out_t: D's logits on target softmax maps (B, 1, h, w). Returns a scalar.
    """
    return _gan_criterion(d_out_t, SOURCE_LABEL, gan)


def adv_discriminator_loss(d_out_s, d_out_t, gan="vanilla"):
    """Eq. 3, D's side:  L_D = 1/2 [ BCE(D(softmax(A(x_s))), source) + BCE(D(softmax(A(x_t))), target) ]

    Both inputs must be computed from DETACHED predictions, so that this loss trains D only.
    d_out_s, d_out_t: (B, 1, h, w) logits. Returns a scalar.
    """
    return 0.5 * (_gan_criterion(d_out_s, SOURCE_LABEL, gan) + _gan_criterion(d_out_t, TARGET_LABEL, gan))


# --------------------------------------------------------------------------------------------------------------
# Eq. 5: pseudo-labels with IAST's instance-adaptive, class-wise thresholds
# --------------------------------------------------------------------------------------------------------------

def iast_update(prob, theta, alpha=IAST_ALPHA, beta=IAST_BETA, gamma=IAST_GAMMA):
    """IAST's adaptive threshold update (Mei et al. 2020, Eq. 7-8), per class c:

        conf_c = max_k p_k over the pixels whose prediction argmax_k p_k is c
        psi_c  = percentile( conf_c with theta_c appended , 100 * (1 - alpha * theta_c ** gamma) )
        theta_c <- min( beta * theta_c + (1 - beta) * psi_c , 0.999 )

    Appending theta_c makes psi_c defined (= theta_c) for a class absent from the batch, so its threshold
    stays put. The percentile interpolates linearly, as numpy.percentile does.

    prob: (B, C, H, W) softmax of A on target images; theta: (C,) current thresholds. Returns the new (C,).
    """
    conf, pred = prob.max(dim=1)                                      # (B, H, W) each
    new_theta = theta.clone()
    for c in range(theta.numel()):  # a loop over classes, never over pixels
        conf_c = torch.cat([conf[pred == c], theta[c:c + 1].to(conf.dtype)])      # (n_c + 1,)
        q = 1.0 - alpha * theta[c] ** gamma
        psi_c = torch.quantile(conf_c.float(), q.clamp(0.0, 1.0).float())
        # beta * theta + (1 - beta) * psi, written so that psi == theta (absent class) leaves theta bit-exact
        new_theta[c] = torch.clamp(theta[c] + (1.0 - beta) * (psi_c - theta[c]), max=IAST_MAX_THETA)
    return new_theta


def pseudo_labels(prob, theta, ignore_index=IGNORE_INDEX):
    """Eq. 5:  y_hat_i = argmax_k p_ik  if  max_k p_ik >= theta_{argmax_k p_ik},  else ignore (255).

    prob: (B, C, H, W) softmax of A; theta: (C,). Returns (B, H, W) long.
    """
    conf, pred = prob.max(dim=1)                                      # (B, H, W)
    return torch.where(conf >= theta[pred], pred, torch.full_like(pred, ignore_index))


def pseudo_label_loss(logits1, logits2, y_hat):
    """Eq. 5's loss for the selector: both heads learn A's pseudo-labels,
    L_pseudo(B) = L_seg(F1(G(x_t)), y_hat) + L_seg(F2(G(x_t)), y_hat)."""
    return seg_loss(logits1, y_hat) + seg_loss(logits2, y_hat)


# --------------------------------------------------------------------------------------------------------------
# Eq. 6: the discrepancy between the two heads (MCD)
# --------------------------------------------------------------------------------------------------------------

def discrepancy(logits1, logits2):
    """Eq. 6:  L_dis = 1/(N C) sum_i sum_k | p1_ik - p2_ik |,   p = softmax(logits, dim=1),
    the mean over pixels i of the mean absolute difference of the two softmax maps over classes k.

    The selector MAXIMISES it (the trainer adds -lambda_dis * L_dis), and only in its heads F1, F2: the
    trainer evaluates the heads on detached backbone features for this term, so G receives no gradient
    from it. Why: G learns from the pseudo-labels alone and stays a shared, agreed-upon representation;
    if G also maximised the discrepancy it could make the heads disagree everywhere (a trivial, uninformative
    mask). With G fixed, F1 and F2 can only drift apart where the features are ambiguous, which is exactly
    where A's predictions are unreliable: the pixels worth labelling (MCD's step B, Saito et al. 2018).

    logits1, logits2: (B, C, h, w). Returns a scalar in [0, 2 / C].
    """
    p1 = F.softmax(logits1, dim=1)                                    # (B, C, h, w)
    p2 = F.softmax(logits2, dim=1)                                    # (B, C, h, w)
    return (p1 - p2).abs().mean()


# --------------------------------------------------------------------------------------------------------------
# Not LabOR's: RIPU's two extra losses (Xie et al., CVPR 2022), for the "RIPU as published" comparison only
# --------------------------------------------------------------------------------------------------------------
# From RIPU's code (BIT-DA/RIPU, core/loss/negative_learning_loss.py, local_consistent_loss.py, boundary.py) and
# its GTA5 configs: A's loss there is CE(source) + CE(revealed target) + 0.1 L_cr + 1.0 L_nl.

RIPU_NL_THRESHOLD, RIPU_LAMBDA_NL, RIPU_LAMBDA_CR = 0.05, 1.0, 0.1


def negative_learning_loss(prob, threshold=RIPU_NL_THRESHOLD):
    """RIPU's negative learning on target images: the classes A already gives less than `threshold` are pushed
    further down,  L_nl = sum_{i,c} m_ic (-log(1 - p_ic + 1e-6)) / sum_{i,c} m_ic,  m_ic = [p_ic < threshold]
    (m carries no gradient). prob: (B, C, H, W) softmax at image size. Returns a scalar (0 if m is empty)."""
    m = (prob < threshold).float().detach()                                    # (B, C, H, W)
    return (m * -torch.log(1 - prob + 1e-6)).sum() / m.sum().clamp(min=1)


def local_consistency_loss(prob, labels, ignore_index=IGNORE_INDEX):
    """RIPU's local consistency on source images: on the source labels' class boundaries, a prediction should
    agree with its 3x3 neighbourhood,  d_i = sum_c | p_ic - mean_{j in 3x3(i)} p_jc |  (replicate padding),
    L_cr = the mean of d_i over the boundary pixels. A boundary pixel is, as in RIPU's code, one where the
    8-neighbour Laplacian of the label map (class ids as numbers, zero padding) is not 0 and the label is not 255
    (so an image edge counts for classes other than 0). prob: (B, C, H, W), labels (B, H, W). Returns a scalar."""
    mean = F.avg_pool2d(F.pad(prob, (1, 1, 1, 1), mode="replicate"), 3, stride=1)   # (B, C, H, W)
    d = (prob - mean).abs().sum(dim=1)                                            # (B, H, W)
    laplacian = torch.full((1, 1, 3, 3), -1.0, device=prob.device)
    laplacian[0, 0, 1, 1] = 8.0
    edges = F.conv2d(labels[:, None].float(), laplacian, padding=1)[:, 0]         # (B, H, W)
    boundary = (edges != 0) & (labels != ignore_index)
    return (d * boundary).sum() / boundary.sum().clamp(min=1)


def ripu_losses(logits_s, y_s, logits_t, size_t):
    """RIPU's two terms on A's loss, as selection.MODES["ripu"] adds them to A's step: lambda_nl L_nl on the target
    softmax at image size (size_t), lambda_cr L_cr on the source softmax at label size. logits_s, logits_t: A's main
    logits (B, C, h, w); y_s: source labels (B, Hs, Ws). Returns {name: (weight, loss)}, added in this order."""
    prob_t = F.softmax(upsample(logits_t, size_t), dim=1)                         # (B, C, Ht, Wt)
    prob_s = F.softmax(upsample(logits_s, y_s.shape[-2:]), dim=1)                 # (B, C, Hs, Ws)
    return {"loss_nl": (RIPU_LAMBDA_NL, negative_learning_loss(prob_t)),
            "loss_cr": (RIPU_LAMBDA_CR, local_consistency_loss(prob_s, y_s))}


# --------------------------------------------------------------------------------------------------------------
# The metric every table reports
# --------------------------------------------------------------------------------------------------------------

def iou_from_confusion(conf):
    """The benchmark's metric. conf[i, j] = pixels of class i predicted j; IoU_c = TP / (TP + FP + FN).
    Returns (mIoU over the classes present in labels or predictions, per-class IoU with NaN for absent ones)."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = tp / union                                       # NaN where union == 0
    return float(np.nanmean(iou.numpy())), iou.tolist()
