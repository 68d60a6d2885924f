import subprocess
import sys

import numpy as np

from conftest import shared_path


def test_real_face_found(detector, astronaut_rgb):
    faces = detector.detect(astronaut_rgb)
    assert len(faces) >= 1
    x1, y1, x2, y2 = faces.xyxy[0]
    h, w = astronaut_rgb.shape[:2]
    # the astronaut's face sits in the upper middle of the picture
    assert 0.2 * w < (x1 + x2) / 2 < 0.7 * w and (y1 + y2) / 2 < 0.5 * h
    assert faces.landmarks.shape == (len(faces), 5, 2)
    le, re = faces.landmarks[0, 0], faces.landmarks[0, 1]
    assert le[0] < re[0]  # left eye is on the image's left
    assert (faces.score >= 0.9).all()


def test_no_face_is_empty_batch_not_none(detector):
    faces = detector.detect(np.full((120, 160, 3), 127, np.uint8))
    assert faces is not None and len(faces) == 0
    assert faces.xyxy.shape == (0, 4) and faces.landmarks.shape == (0, 5, 2)


def test_boxes_clipped_to_frame(detector, astronaut_rgb):
    (x1, y1, x2, y2) = detector.detect(astronaut_rgb).xyxy[0].astype(int)
    # a crop whose left and top edges cut through the face
    crop = np.ascontiguousarray(astronaut_rgb[y1 + (y2 - y1) // 5:, x1 + (x2 - x1) // 5:])
    raw, _ = detector.cascade.detect(crop, detector.min_face_size)
    assert len(raw) >= 1 and raw[0, 0] < 0 and raw[0, 1] < 0  # MTCNN's box leaves the frame
    faces = detector.detect(crop)
    assert len(faces) >= 1
    h, w = crop.shape[:2]
    assert (faces.xyxy >= 0).all()
    assert (faces.xyxy[:, [0, 2]] <= w).all() and (faces.xyxy[:, [1, 3]] <= h).all()
    assert faces.xyxy[0, 0] == 0 and faces.xyxy[0, 1] == 0  # clipped to the edges it crossed


def test_group_photo_many_faces(detector):
    import cv2

    p = shared_path("media", "groups", "facenet_pytorch_multiface.jpg")
    img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
    assert len(detector.detect(img)) >= 5


def test_product_path_imports_neither_facenet_pytorch_nor_torchvision():
    # their imports alone hold ~145 MB of resident memory; only the exact reference needs them
    code = ("import sys; from emobatch.config import Settings; "
            "from emobatch.pipeline import FacePipeline; FacePipeline(Settings(device='cpu')); "
            "print(sorted({'facenet_pytorch', 'torchvision'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
